"""The device peak lookup: the denominator of the `mfu` metric."""

from engine import flops


def test_peak_from_table_or_override(monkeypatch):
    class Dev:
        platform, device_kind = "tpu", "TPU v5 lite"

    assert flops.peak_flops("bfloat16", Dev()) == 197e12
    monkeypatch.setenv("TRAITRL_PEAK_FLOPS", "1.5e11")
    assert flops.peak_flops("float32") == 1.5e11
