"""MSPN video prediction: model, data, training and evaluation (needs torch)."""
import os as _os

__version__ = "0.1.0"


def _checkout_root(package_dir: str) -> str | None:
    """The repository root when this package is imported from a source checkout, else None."""
    if _os.path.isdir(_os.path.join(package_dir, "runtime")):
        return None  # an installed package: export/ and runtime/ were copied inside
    root = _os.path.dirname(package_dir)
    for part in ("runtime", "export"):
        if not _os.path.isfile(_os.path.join(root, part, "__init__.py")):
            return None
    try:
        with open(_os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
            ours = 'name = "mspn"' in f.read()
    except OSError:
        return None
    return root if ours else None


# export/ and runtime/ sit at the top of the repository and are installed as mspn.export and
# mspn.runtime (pyproject.toml's package-dir). From a source checkout, `import mspn` finds this
# folder, which has no export/ or runtime/ inside: always so in an editable install, and also
# with a regular install whenever the repository root is on sys.path (it is the working
# directory), because the source folder then shadows the installed package. Appending the
# repository root to the search path makes mspn.export and mspn.runtime resolve to the
# top-level folders there. This folder stays first, so its own modules always win; other
# top-level folders become reachable as mspn.<name> too, but nothing imports them that way.
# An installed package (export/ and runtime/ inside, no pyproject.toml next to it) is untouched.
_root = _checkout_root(_os.path.dirname(_os.path.abspath(__file__)))
if _root is not None and _root not in __path__:
    __path__.append(_root)
del _root
