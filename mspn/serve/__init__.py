"""Serving a model folder with NVIDIA Triton Inference Server (the `nvidia-pytriton` wheel's
``tritonserver`` and Python backend), and the native-backend model repository for GPU servers.

Torch-free: the models inside Triton run on ``mspn.runtime``.
"""
