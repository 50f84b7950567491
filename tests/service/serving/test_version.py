"""ServedVersion on a real TF1 SavedModel: per-model batching settings, padding to allowed sizes, deadlines."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.core.errors import DeadlineExceeded, InvalidInput
from service.serving.version import BatchingSettings, ServedVersion
from service.runtime.savedmodel import LoadedModel
from service.settings import Settings, SettingsError
from tests.conftest import TESTDATA


@pytest.fixture(scope="module")
def half_plus_two():
    return LoadedModel(TESTDATA / "saved_model_half_plus_two_cpu" / "00000123")


class Recording:
    """Wraps a real model's run() to see the batch shapes that reach it."""

    def __init__(self, model):
        self.model, self.shapes = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run(self, signature, inputs, output_filter=None):
        self.shapes.append({k: v.shape for k, v in inputs.items()})
        return self.model.run(signature, inputs, output_filter)


def test_batches_are_padded_to_the_next_allowed_size_and_trimmed(half_plus_two):
    recording = Recording(half_plus_two)
    version = ServedVersion("half", 123, recording, BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4, 8)))

    async def main():
        out = await version.predict("serving_default", {"x": np.array([[1.0], [2.0], [3.0]], np.float32)})
        await version.drain_and_stop()
        return out

    out = asyncio.run(main())
    np.testing.assert_allclose(out["y"], [[2.5], [3.0], [3.5]])
    assert recording.shapes == [{"x": (4, 1)}]


def test_expired_deadline_is_504_material_and_never_runs(half_plus_two):
    recording = Recording(half_plus_two)
    version = ServedVersion("half", 123, recording, BatchingSettings())

    async def main():
        with pytest.raises(DeadlineExceeded):
            await version.predict("serving_default", {"x": np.ones((1, 1), np.float32)}, deadline=time.monotonic() - 1)
        await version.drain_and_stop()

    asyncio.run(main())
    assert recording.shapes == []


def test_inputs_must_share_a_batch_dimension(half_plus_two):
    version = ServedVersion("half", 123, half_plus_two, BatchingSettings())
    with pytest.raises(InvalidInput, match="batch dimension"):
        asyncio.run(version.predict("serving_default", {"x": np.float32(1.0)}))


def test_per_model_batching_overrides():
    settings = Settings(max_batch_size=32,
                        model_batching="digits:allowed_batch_sizes=2,8,max_batch_size=8; other: max_queue=5")
    assert settings.batching_for("digits").max_batch_size == 8
    assert settings.batching_for("digits").allowed_sizes() == (2, 8)
    assert settings.batching_for("other").max_batch_size == 32 and settings.batching_for("other").max_queue == 5
    assert settings.batching_for("third") == settings


@pytest.mark.parametrize("kwargs, message", [
    ({"model_batching": "digits:max_batch_size=0"}, "max_batch_size"),
    ({"model_batching": "digits:speed=fast"}, "unknown"),
    ({"model_batching": "digits"}, "model:key=value"),
    ({"allowed_batch_sizes": "4,16", "max_batch_size": 32}, "end at max_batch_size"),
    ({"allowed_batch_sizes": "8,4,32", "max_batch_size": 32}, "increase"),
])
def test_bad_batching_settings_are_refused(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        Settings(**kwargs).batching_for("digits")


class CallLog:
    """Wraps a real model to see which signatures run, how (one item or a mapped batch) and on how many items."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run(self, signature, inputs, output_filter=None):
        value = next(iter(inputs.values()))
        self.calls.append(("run", signature, len(value) if np.ndim(value) else None))
        return self.model.run(signature, inputs, output_filter)

    def run_each(self, signature, inputs):
        self.calls.append(("run_each", signature, len(next(iter(inputs.values())))))
        return self.model.run_each(signature, inputs)


@pytest.fixture(scope="module")
def shapes_model(tiny_export):
    return LoadedModel(tiny_export[0])


def test_the_images_of_a_batch_are_decoded_and_scored_in_one_call(shapes_model, images, expected):
    """A batch of encoded images is one ``serving_default`` call: the graph maps the decoder over the batch and
    runs the model, with no trip through numpy between the two (issue 14: 0.86 -> 0.64 ms of CPU per image)."""
    log = CallLog(shapes_model)
    version = ServedVersion("shapes", 1, log, BatchingSettings(max_batch_size=8))

    async def main():
        out = await version.classify_images(images[:4])
        await version.drain_and_stop()
        return out

    out = asyncio.run(main())
    np.testing.assert_allclose(out["scores"], expected[:4], rtol=1e-4, atol=1e-5)
    assert log.calls == [("run", "serving_default", 4)]


def test_a_bad_image_batched_with_good_ones_fails_only_its_own_request(shapes_model, images, expected):
    log = CallLog(shapes_model)
    version = ServedVersion("shapes", 1, log, BatchingSettings(max_batch_size=8, batch_timeout_s=0.2))
    truncated = images[0][: len(images[0]) // 2]  # the header is intact: only the decoder finds the fault

    async def main():
        first = asyncio.ensure_future(version.classify_images(images[:1]))  # runs alone: the executor was idle
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(version.classify_images(batch)) for batch in ([images[1]], [truncated], [images[2]])]
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        await version.drain_and_stop()
        return results

    first, good1, bad, good2 = asyncio.run(main())
    np.testing.assert_allclose(first["scores"][0], expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(good1["scores"][0], expected[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(good2["scores"][0], expected[2], rtol=1e-4, atol=1e-5)
    assert isinstance(bad, InvalidInput) and "image 0" in bad.message
    # The three were batched; their one call failed, so each image was decoded alone and the good ones scored.
    assert ("run", "serving_default", 3) in log.calls
    assert log.calls[-4:] == [("run", "preprocess", None)] * 3 + [("run", "pixels", 2)]


def test_a_batch_of_encoded_images_is_padded_to_the_next_allowed_size(shapes_model, images, expected):
    log = CallLog(shapes_model)
    version = ServedVersion("shapes", 1, log, BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4, 8)))

    async def main():
        out = await version.classify_images(images[:3])
        await version.drain_and_stop()
        return out

    out = asyncio.run(main())
    assert log.calls == [("run", "serving_default", 4)]
    assert out["scores"].shape[0] == 3
    np.testing.assert_allclose(out["scores"], expected[:3], rtol=1e-4, atol=1e-5)


def test_small_requests_have_their_headers_checked_on_the_loop_and_large_ones_in_a_thread(shapes_model, images):
    """A thread hop costs more than checking a small image's header (~50 against ~20 us of CPU, issue 14); a
    large request's checks (a GIF's frames are scanned) must not stall the event loop."""
    import io
    import threading

    from PIL import Image

    from service.serving import version as version_module

    version = ServedVersion("shapes", 1, shapes_model, BatchingSettings(max_batch_size=8))
    threads = []
    checked = version.images.check_headers
    version.images.check_headers = lambda imgs: (threads.append(threading.get_ident()), checked(imgs))[1]
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(noise, "PNG")
    large = [noise.getvalue()]
    assert len(large[0]) > version_module.INLINE_CHECK_BYTES

    async def main():
        loop_thread = threading.get_ident()
        await version.classify_images(images[:1])
        await version.classify_images(large)
        await version.drain_and_stop()
        return loop_thread

    loop_thread = asyncio.run(main())
    assert threads[0] == loop_thread and threads[1] != loop_thread
