"""The adaptive alternation rule on scripted score sequences."""
import json

import pytest

from mspn.train.alternation import Alternation, D, G


def run(alt, scores):
    """Feed (fake, real) pairs; return the side chosen after each."""
    return [alt.update(f, r) for f, r in scores]


def test_starts_with_discriminator_and_stays_while_it_is_losing():
    alt = Alternation(3)
    assert alt.phase == D
    # fake scored as high as real: D is losing, keeps training
    assert run(alt, [(0.5, 0.5), (0.6, 0.5), (0.5, 0.49), (0.5, 0.5)]) == [D, D, D, D]


def test_discriminator_leaves_at_two_percent_even_before_the_window_is_full():
    alt = Alternation(3)
    # mean real 1.0, mean fake 0.97 < 1.0 - 1/50: D is winning by more than 2%
    assert run(alt, [(0.97, 1.0)]) == [G]


def test_discriminator_leaves_early_at_one_percent_only_with_a_full_window():
    alt = Alternation(3)
    # fake 0.985: below real - 1% but not below real - 2%
    assert run(alt, [(0.985, 1.0), (0.985, 1.0)]) == [D, D]
    assert run(alt, [(0.985, 1.0)]) == [G]          # the window is now full


def test_generator_trains_until_window_full_and_fake_catches_up():
    alt = Alternation(3, phase=G)
    # D clearly wins for two batches, then fakes catch up: the window mean decides
    decisions = run(alt, [(0.0, 1.0), (0.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)])
    # windows: [0,0,1] mean 1/3 < 0.98 -> G; [0,1,1] mean 2/3 -> G; [1,1,1] -> D
    assert decisions == [G, G, G, G, D]


def test_generator_needs_a_full_window_even_if_fakes_already_pass():
    alt = Alternation(3, phase=G)
    assert run(alt, [(1.0, 1.0), (1.0, 1.0)]) == [G, G]
    assert run(alt, [(1.0, 1.0)]) == [D]


def test_thresholds_use_the_absolute_value_of_negative_real_scores():
    # real -1.0: 2% margin is -1.02; fake -1.01 is within it (D losing), -1.03 is not
    assert Alternation(3).update(-1.01, -1.0) == D
    assert Alternation(3).update(-1.03, -1.0) == G


def test_full_cycle_on_a_scripted_sequence():
    alt = Alternation(3)
    seq = [(0.9, 0.9), (0.89, 0.9),   # window means 0.895 vs 0.9: within 2%, D keeps training
           (0.5, 1.0),                  # 0.763 vs 0.933: D wins by > 2% -> G
           (0.5, 1.0), (0.95, 0.95), (0.95, 0.95),   # fake means 0.63, 0.65, 0.8: G keeps training
           (0.95, 0.95)]                # 0.95 vs 0.95 with a full window -> D
    assert run(alt, seq) == [D, D, G, G, G, G, D]


def test_state_round_trips_through_plain_lists():
    alt = Alternation(3)
    run(alt, [(0.9, 1.0), (0.2, 1.0)])
    state = alt.state_dict()
    assert json.loads(json.dumps(state)) == state        # plain types only
    copy = Alternation.from_state(state)
    seq = [(0.5, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (0.9, 1.0)]
    assert run(copy, seq) == run(alt, seq)


def test_bad_arguments():
    with pytest.raises(ValueError, match="window must be >= 1"):
        Alternation(0)
    with pytest.raises(ValueError, match="phase must be"):
        Alternation(3, phase="X")


def test_per_video_windows_are_seeded_with_a_zero_that_counts():
    # the authors' bookkeeping: [0] seeds both windows, so the window is full after two batches
    # and the means are pulled towards 0; fake 0.985 vs real 1.0 leaves D one batch earlier
    seeded, plain = Alternation.for_video(3), Alternation(3)
    assert seeded.phase == D and list(seeded.fake) == [0.0] and list(seeded.real) == [0.0]
    seq = [(0.985, 1.0), (0.985, 1.0), (0.985, 1.0)]
    # seeded: [0, .985] vs [0, 1]: .4925 >= .49 -> D; then full, .657 < .667 - .0067 -> G
    assert run(seeded, seq[:2]) == [D, G]
    # continuous: [.985, .985] is not full -> D; the third batch fills it -> G
    assert run(plain, seq) == [D, D, G]


def test_per_video_scripted_sequence_over_two_videos():
    # video 1 (two clips): D wins at once, G trains and the video ends mid-G-phase
    videos = [[(0.5, 1.0), (1.0, 1.0)], [(1.0, 1.0), (1.0, 1.0)]]
    per_video = []
    for scores in videos:
        alt = Alternation.for_video(3)                  # each video re-seeds and starts with D
        per_video.append([alt.phase] + run(alt, scores))
    # phases before each batch, then after the last: video 2 starts with D again
    assert per_video == [[D, G, G], [D, D, D]]
    # continuous windows carry over: video 2 continues the G phase until [.5, 1, 1] -> [1, 1, 1]
    alt = Alternation(3)
    assert [alt.phase] + run(alt, videos[0] + videos[1]) == [D, G, G, G, D]
