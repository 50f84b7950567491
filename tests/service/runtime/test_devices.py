"""Device choice. No GPU exists here, so GPU counts are given to the pure decision, not detected."""

from service.runtime.devices import DeviceSettings, plan_gpu


def test_cpu_when_no_gpu():
    assert plan_gpu(0, DeviceSettings()) == (None, "cpu")


def test_first_gpu_with_memory_growth_by_default():
    assert plan_gpu(1, DeviceSettings()) == ("/GPU:0", "growth")
    assert plan_gpu(4, DeviceSettings()) == ("/GPU:0", "growth")  # one serving process per GPU


def test_memory_limit_when_configured():
    assert plan_gpu(1, DeviceSettings(gpu_memory_limit_mb=4096)) == ("/GPU:0", "limit")


def test_by_default_each_concurrent_batch_gets_its_share_of_the_cores():
    from service.runtime.devices import AUTO, intra_op_threads
    from service.settings import Settings

    assert Settings().intra_op_threads == AUTO and Settings().max_concurrent_batches == 2
    assert intra_op_threads(AUTO, concurrent_batches=2, cores=2) == 1
    assert intra_op_threads(AUTO, concurrent_batches=2, cores=16) == 8
    assert intra_op_threads(AUTO, concurrent_batches=4, cores=2) == 1  # never below one thread
    assert intra_op_threads(AUTO, concurrent_batches=1, cores=2) == 2


def test_an_explicit_intra_op_thread_count_is_kept():
    from service.runtime.devices import intra_op_threads

    assert intra_op_threads(3, concurrent_batches=2, cores=2) == 3
    assert intra_op_threads(0, concurrent_batches=2, cores=2) == 0  # 0: TensorFlow's own choice, as TF Serving's flag
