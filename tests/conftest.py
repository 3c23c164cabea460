"""Shared test setup: quiet TensorFlow, CPU only, a session-wide tiny CLIP."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip():
    """The tiny CLIP preset, loaded through `load_clip` like a named preset."""
    from cmaclip_tf.models import load_clip

    return load_clip("tiny_clip")
