"""Device choice. No GPU exists here, so GPU counts are given to the pure decision, not detected."""

from service.runtime.devices import DeviceSettings, plan_gpu


def test_cpu_when_no_gpu():
    assert plan_gpu(0, DeviceSettings()) == (None, "cpu")


def test_first_gpu_with_memory_growth_by_default():
    assert plan_gpu(1, DeviceSettings()) == ("/GPU:0", "growth")
    assert plan_gpu(4, DeviceSettings()) == ("/GPU:0", "growth")  # one serving process per GPU


def test_memory_limit_when_configured():
    assert plan_gpu(1, DeviceSettings(gpu_memory_limit_mb=4096)) == ("/GPU:0", "limit")
