"""Measurements before any trial: the memory probe, the throughput profile with the
gradient noise scale, and the LR range test."""

from autobatch.measure.lr_range import LRRange, lr_range_test
from autobatch.measure.noise import NoiseEstimate
from autobatch.measure.probe import probe
from autobatch.measure.probe_result import Attempt, ProbeResult
from autobatch.measure.throughput import ProfileResult, ProfileRow, profile

__all__ = ["Attempt", "LRRange", "NoiseEstimate", "ProbeResult", "ProfileResult", "ProfileRow",
           "lr_range_test", "probe", "profile"]
