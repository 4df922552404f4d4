"""train/runtime.py: devices and dtypes, RNG state round trips, stop requests."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from curate.core.errors import ConfigError
from train.runtime import StopRequest, resolve_dtype, rng_state, seed_everything, select_device, set_rng_state


def test_rng_state_round_trip_restores_every_generator():
    seed_everything(3)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    seed_everything(99)
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == first


def test_device_and_dtype_names():
    cpu = select_device("cpu")
    assert cpu.type == "cpu" and resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype("fp8", cpu)
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu")


def test_stop_request_catches_sigterm_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as flag:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGTERM)  # would kill the test run without the handler
        assert flag.requested
    assert signal.getsignal(signal.SIGTERM) == before
