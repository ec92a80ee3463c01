"""Image features: the encoder on tiny randomly initialised vision models, precomputed vectors, the builder.

No image model's weights are available offline, so the models here are built from small configs
(ViT, CLIP, a CLIP vision tower with projection), saved to tmp_path and loaded back by path. The
processor configs are written as JSON: instantiating ``ViTImageProcessor`` / ``CLIPImageProcessor``
needs Pillow or torchvision; the tests pass with or without Pillow (matplotlib brings it).
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="the image encoder needs torch")
transformers = pytest.importorskip("transformers", reason="the image encoder needs transformers (extra 'text')")

from kg_builders.builders.image_features import (  # noqa: E402
    ImageEncoder,
    ImageFeatureBuilder,
    _resize_target,
    _TorchPreprocessor,
    load_image_vectors,
)
from kg_builders.builders.standard import standard_builders  # noqa: E402
from kg_builders.errors import ConfigError, DataError, MissingDependencyError, SchemaError  # noqa: E402
from kg_builders.graph import build_graph  # noqa: E402
from kg_builders.sources.synthetic import make_synthetic_world  # noqa: E402

TINY = dict(
    image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
)
VIT_PROCESSOR = {
    "image_processor_type": "ViTImageProcessor",
    "do_resize": True,
    "size": {"height": 16, "width": 16},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CLIP_PROCESSOR = {
    "image_processor_type": "CLIPImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 16},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 16, "width": 16},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": CLIP_MEAN,
    "image_std": CLIP_STD,
    "do_convert_rgb": True,
}


def _save(model, path: Path, processor: dict) -> Path:
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(processor))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision_models")
    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out["vit"] = _save(transformers.ViTModel(transformers.ViTConfig(**TINY)), root / "vit", VIT_PROCESSOR)
        text = dict(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        clip = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=TINY, projection_dim=24))
        out["clip"] = _save(clip, root / "clip", CLIP_PROCESSOR)
        proj = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**TINY, projection_dim=20))
        out["clip_vision_proj"] = _save(proj, root / "clip_vision_proj", CLIP_PROCESSOR)
    return out


def _images(n: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _pixels(images: list[np.ndarray], mean: list[float], std: list[float]) -> torch.Tensor:
    """What the processor gives for images already at the model's size: rescale and normalise."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=1).numpy()


# ------------------------------------------------------------------------------ the encoder
def test_clip_vectors_are_the_projected_pooled_output(models) -> None:
    images = _images(3)
    enc = ImageEncoder(model=str(models["clip"]), local_files_only=True)
    res = enc.encode(images)
    model = transformers.CLIPModel.from_pretrained(models["clip"]).eval()
    with torch.inference_mode():
        ref = model.get_image_features(pixel_values=_pixels(images, CLIP_MEAN, CLIP_STD))
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    assert enc.dim == 24 == res.vectors.shape[1]
    assert res.vectors.dtype == np.float32 and res.mask.all() and res.skipped == 0 and res.missing == 0
    np.testing.assert_allclose(res.vectors, _unit(ref), atol=1e-5)


def test_vision_tower_with_projection_uses_image_embeds(models) -> None:
    images = _images(2, seed=3)
    enc = ImageEncoder(model=str(models["clip_vision_proj"]), local_files_only=True, normalize=False)
    res = enc.encode(images)
    model = transformers.CLIPVisionModelWithProjection.from_pretrained(models["clip_vision_proj"]).eval()
    with torch.inference_mode():
        ref = model(pixel_values=_pixels(images, CLIP_MEAN, CLIP_STD)).image_embeds
    assert enc.dim == 20
    np.testing.assert_allclose(res.vectors, ref.numpy(), atol=1e-5)
    assert not np.allclose(np.linalg.norm(res.vectors, axis=1), 1.0)  # normalize=False kept the raw norm


def test_vit_vectors_are_the_pooler_output(models) -> None:
    images = _images(2, seed=4)
    res = ImageEncoder(model=str(models["vit"]), local_files_only=True).encode(images)
    model = transformers.ViTModel.from_pretrained(models["vit"]).eval()
    with torch.inference_mode():
        ref = model(pixel_values=_pixels(images, [0.5] * 3, [0.5] * 3)).pooler_output
    np.testing.assert_allclose(res.vectors, _unit(ref), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)


def test_none_rows_are_masked_and_inputs_of_every_kind_agree(models, tmp_path) -> None:
    img = _images(1, size=8, seed=5)[0]
    npy = tmp_path / "img.npy"
    np.save(npy, img)
    buf = io.BytesIO()
    np.save(buf, img)
    enc = ImageEncoder(model=models["vit"], local_files_only=True, batch_size=2)
    res = enc.encode([img, None, str(npy), buf.getvalue(), npy, img.astype(np.float64) / 255.0, img[:, :, :1]])
    assert res.mask.tolist() == [True, False, True, True, True, True, True]
    assert res.missing == 1 and res.skipped == 0
    assert not res.vectors[1].any()
    for row in (2, 3, 4, 5):
        np.testing.assert_allclose(res.vectors[row], res.vectors[0], atol=1e-6)
    assert not np.allclose(res.vectors[6], res.vectors[0])  # the grey image differs from the colour one


def test_encoding_is_deterministic_and_batch_independent(models) -> None:
    images = _images(5, size=8, seed=6)
    a = ImageEncoder(model=str(models["vit"]), local_files_only=True, batch_size=2).encode(images)
    b = ImageEncoder(model=str(models["vit"]), local_files_only=True, batch_size=2).encode(images)
    c = ImageEncoder(model=str(models["vit"]), local_files_only=True, batch_size=5).encode(images)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_allclose(a.vectors, c.vectors, atol=1e-6)


def test_bad_images_raise_or_are_counted_skips(models, tmp_path) -> None:
    good = _images(1, size=8)[0]
    buf = io.BytesIO()
    np.save(buf, good)
    truncated = buf.getvalue()[:-20]
    missing_file = tmp_path / "nope.npy"
    inputs = [good, b"\x00\x01not an image", truncated, str(missing_file), np.zeros((4, 4, 2), np.uint8), None]
    skip = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="skip").encode(inputs)
    assert skip.mask.tolist() == [True, False, False, False, False, False]
    assert skip.skipped == 4 and skip.missing == 1
    assert [i for i, _ in skip.failed] == [1, 2, 3, 4]
    assert "not a recognised image format" in skip.failed[0][1]
    assert str(missing_file) in skip.failed[2][1]
    assert not skip.vectors[1:].any()

    strict = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="raise")
    with pytest.raises(DataError, match="image 1"):
        strict.encode(inputs[:2], ids=["i0", "i1"])
    with pytest.raises(DataError, match="'i1'"):
        strict.encode(inputs[:2], ids=["i0", "i1"])
    with pytest.raises(DataError) as err:
        strict.encode([str(missing_file)])
    assert err.value.file == str(missing_file)
    with pytest.raises(DataError, match="values in 0..255"):
        strict.encode([np.full((4, 4, 3), 300, dtype=np.int32)])


def test_encoded_png_needs_pillow_or_decodes_with_it(models) -> None:
    enc = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="skip")
    img = _images(1, size=8, seed=7)[0]
    if importlib.util.find_spec("PIL") is None:
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
        with pytest.raises(MissingDependencyError, match="Pillow"):
            enc.encode([png])  # a missing library is not a bad image: never a silent skip
    else:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        res = enc.encode([buf.getvalue(), img])
        np.testing.assert_allclose(res.vectors[0], res.vectors[1], atol=1e-6)


def test_exif_rotation_and_high_bit_depth_files_decode_as_they_look(models, tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    enc = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="raise")
    upright = np.zeros((16, 8, 3), np.uint8)
    upright[:8] = (0, 0, 255)  # blue on top, red below
    upright[8:] = (255, 0, 0)
    exif = pil.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: shown turned back clockwise
    sideways = tmp_path / "sideways.png"
    pil.fromarray(np.rot90(upright, 1)).save(sideways, exif=exif.tobytes())

    grey = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    grey16 = tmp_path / "grey16.png"  # 16-bit grey: Pillow's convert("RGB") clipped it to white
    pil.fromarray(grey.astype(np.uint16) * 257).save(grey16)
    grey_float = tmp_path / "grey_float.tiff"  # 32-bit float grey in [0, 1]: it was clipped to black
    pil.fromarray(grey.astype(np.float32) / 255.0).save(grey_float)

    res = enc.encode([str(sideways), upright, str(grey16), str(grey_float), grey])
    np.testing.assert_allclose(res.vectors[0], res.vectors[1], atol=1e-6)
    np.testing.assert_allclose(res.vectors[2], res.vectors[4], atol=1e-6)
    np.testing.assert_allclose(res.vectors[3], res.vectors[4], atol=1e-6)
    with pytest.raises(DataError, match="values in \\[0, 1\\]"):
        enc.encode([pil.fromarray(grey.astype(np.float32))])  # floats past 1: an error, not a clipped image


def test_a_non_finite_vector_names_the_item_id(models, monkeypatch) -> None:
    forward = ImageEncoder._forward

    def overflowing(self, arrays):  # a float16 overflow on a GPU, for the second image
        out = forward(self, arrays)
        if len(arrays) > 1:
            out[1] = np.inf
        return out

    monkeypatch.setattr(ImageEncoder, "_forward", overflowing)
    enc = ImageEncoder(model=str(models["vit"]), local_files_only=True)
    with pytest.raises(DataError, match="NaN or infinite values for image 1 .*'i2'"):
        enc.encode(_images(3), ids=["i1", "i2", "i3"])


def test_processor_backend(models) -> None:
    enc = ImageEncoder(model=str(models["vit"]), local_files_only=True, preprocess="processor")
    have_backend = importlib.util.find_spec("PIL") is not None or importlib.util.find_spec("torchvision") is not None
    if not have_backend:
        with pytest.raises(MissingDependencyError, match="preprocess='torch'"):
            enc.encode(_images(1))
    else:  # the transformers processor and the torch one agree on images at the model's size
        images = _images(2)
        a = enc.encode(images).vectors
        b = ImageEncoder(model=str(models["vit"]), local_files_only=True, preprocess="torch").encode(images).vectors
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_torch_preprocessing_follows_the_processor_settings() -> None:
    assert _resize_target(20, 40, {"shortest_edge": 16}, crops=True) == (16, 32)
    assert _resize_target(40, 20, {"shortest_edge": 16}, crops=True) == (32, 16)
    assert _resize_target(40, 20, 16, crops=False) == (16, 16)
    assert _resize_target(10, 100, {"shortest_edge": 16, "longest_edge": 80}, crops=True) == (8, 80)
    prep = _TorchPreprocessor(dict(CLIP_PROCESSOR))
    white = np.full((12, 30, 3), 255, dtype=np.uint8)
    pixels = prep([white, _images(1, size=16)[0]])
    assert tuple(pixels.shape) == (2, 3, 16, 16)
    expected = (1.0 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    np.testing.assert_allclose(pixels[0].mean(dim=(1, 2)).numpy(), expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="no torch equivalent"):
        _TorchPreprocessor({**CLIP_PROCESSOR, "resample": 1})
    with pytest.raises(ConfigError, match="crop_pct"):
        _TorchPreprocessor({**CLIP_PROCESSOR, "crop_pct": 0.875})
    with pytest.raises(ConfigError, match="size"):
        _TorchPreprocessor({k: v for k, v in CLIP_PROCESSOR.items() if k != "size"})


def test_settings_are_checked(models, tmp_path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        ImageEncoder(model=str(models["vit"]), batch_size=0)
    with pytest.raises(ConfigError, match="on_bad_image"):
        ImageEncoder(model=str(models["vit"]), on_bad_image="ignore")
    with pytest.raises(ConfigError, match="dtype"):
        ImageEncoder(model=str(models["vit"]), dtype="int8")
    with pytest.raises(ConfigError, match="GPUs only"):
        ImageEncoder(model=str(models["vit"]), local_files_only=True, device="cpu", dtype="float16").encode(_images(1))
    with pytest.raises(ConfigError, match="not a model folder"):
        ImageEncoder(model=str(tmp_path / "missing"), local_files_only=True).encode(_images(1))
    with pytest.raises(ConfigError, match="cannot load vision model"):
        ImageEncoder(model="nobody/no-such-vision-model", local_files_only=True).encode(_images(1))
    with pytest.raises(ConfigError, match="sequence"):
        ImageEncoder(model=str(models["vit"]), local_files_only=True).encode(_images(1)[0])


def test_fingerprint_tracks_weights_and_settings(models, tmp_path) -> None:
    a = ImageEncoder(model=str(models["vit"]), local_files_only=True)
    assert a.fingerprint() == ImageEncoder(model=str(models["vit"]), local_files_only=True, batch_size=3).fingerprint()
    assert (
        a.fingerprint() != ImageEncoder(model=str(models["vit"]), local_files_only=True, normalize=False).fingerprint()
    )
    copy = shutil.copytree(models["vit"], tmp_path / "vit_copy")
    assert ImageEncoder(model=str(copy), local_files_only=True).fingerprint() == a.fingerprint()  # moved: same
    model = transformers.ViTModel.from_pretrained(copy)
    with torch.no_grad():
        model.pooler.dense.bias.add_(1.0)
    model.save_pretrained(copy)
    assert ImageEncoder(model=str(copy), local_files_only=True).fingerprint() != a.fingerprint()  # edited: not


# ------------------------------------------------------------------------------ the builder, end to end
@pytest.fixture(scope="module")
def world():
    tables = make_synthetic_world(num_users=30, num_items=40, seed=1)
    return tables, build_graph(tables, standard_builders(tables))


def test_builder_fills_item_features_with_the_image_mask(models, world) -> None:
    tables, _ = world
    graph = build_graph(tables, standard_builders(tables))
    builder = ImageFeatureBuilder(encoder=ImageEncoder(model=str(models["vit"]), local_files_only=True))
    info = builder.build(graph, tables)
    items = graph.node_ids["item"]
    with_image = set(tables.images["item_id"])
    expected = np.array([i in with_image for i in items])
    assert 0 < expected.sum() < len(items)  # the synthetic world leaves about a fifth without image
    vectors, mask = graph.features["item"]["image"], graph.feature_masks["item"]["image"]
    assert vectors.shape == (len(items), 32) and vectors.dtype == np.float32
    np.testing.assert_array_equal(mask, expected)
    assert not vectors[~mask].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[mask], axis=1), 1.0, atol=1e-5)
    assert info["with_vector"] == int(expected.sum()) and info["missing"] == int((~expected).sum())
    assert info["skipped"] == 0 and info["dim"] == 32 and info["fingerprint"] == builder.encoder.fingerprint()
    entry = graph.recipe[-1]
    assert entry["builder"] == "ImageFeatureBuilder" and entry["info"]["with_vector"] == info["with_vector"]
    assert entry["settings"]["encoder"]["settings"]["model"] == str(models["vit"])
    builder.build(graph, tables)  # a rebuild replaces the slot's recipe entry instead of adding one
    assert sum(r["builder"] == "ImageFeatureBuilder" for r in graph.recipe) == 1
    # the same image gives the same vector through the builder and through the encoder directly
    first = int(np.flatnonzero(mask)[0])
    image = tables.images.set_index("item_id").loc[items[first], "image"]
    np.testing.assert_allclose(builder.encoder.encode([image]).vectors[0], vectors[first], atol=1e-6)
    # deterministic: a fresh encoder on a fresh graph gives identical arrays
    again = build_graph(tables, standard_builders(tables))
    ImageFeatureBuilder(encoder=ImageEncoder(model=str(models["vit"]), local_files_only=True)).build(again, tables)
    np.testing.assert_array_equal(again.features["item"]["image"], vectors)


def test_builder_skips_or_rejects_an_undecodable_image(models, world) -> None:
    tables, _ = world
    bad_item = tables.images["item_id"].iloc[0]
    images = tables.images.copy()
    images["image"] = [
        b"corrupt bytes" if i == bad_item else im for i, im in zip(images.item_id, images.image, strict=True)
    ]
    broken = tables.replace(images=images)
    graph = build_graph(broken, standard_builders(broken))
    enc = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="skip")
    info = ImageFeatureBuilder(encoder=enc).build(graph, broken)
    assert info["skipped"] == 1 and info["failed"][0]["item_id"] == bad_item
    assert not graph.feature_masks["item"]["image"][graph.index("item", bad_item)]
    strict = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="raise")
    with pytest.raises(DataError, match=repr(bad_item)):
        ImageFeatureBuilder(encoder=strict).build(graph, broken)


def test_builder_from_precomputed_vectors(world, tmp_path) -> None:
    tables, graph = world
    items = graph.node_ids["item"]
    rng = np.random.default_rng(0)
    have = items[::2]
    vecs = rng.normal(size=(len(have) + 1, 6)).astype(np.float32)
    np.save(tmp_path / "img.npy", vecs)
    (tmp_path / "img.ids.json").write_text(json.dumps([*have, "not-an-item"]))
    info = ImageFeatureBuilder(vectors_path=str(tmp_path / "img.npy"), slot="clip").build(graph, tables)
    mask = graph.feature_masks["item"]["clip"]
    assert mask.tolist() == [i in set(have) for i in items]
    np.testing.assert_array_equal(graph.features["item"]["clip"][mask], vecs[: len(have)])
    assert (
        info["source"] == "vectors" and info["with_vector"] == len(have) and info["missing"] == len(items) - len(have)
    )


def test_builder_settings_are_checked(models, world) -> None:
    tables, graph = world
    with pytest.raises(ConfigError, match="exactly one"):
        ImageFeatureBuilder()
    with pytest.raises(ConfigError, match="exactly one"):
        ImageFeatureBuilder(encoder=ImageEncoder(model=str(models["vit"])), vectors_path="x.npy")
    builder = ImageFeatureBuilder(encoder=ImageEncoder(model=str(models["vit"]), local_files_only=True))
    with pytest.raises(SchemaError, match="images table"):
        builder.build(graph, tables.replace(images=None))

    with pytest.raises(SchemaError, match="lacks 'set_features'"):
        builder.build(type("NotAGraph", (), {"node_ids": {"item": ["i0"]}})(), tables)

    class NoItems:
        node_ids = {"user": ["u0"]}
        recipe: list = []

        def set_features(self, *args) -> None:
            raise AssertionError("must not be called")

    with pytest.raises(SchemaError, match="'item'"):
        builder.build(NoItems(), tables)


# ------------------------------------------------------------------------------ precomputed vectors
def test_npy_vectors_with_json_or_txt_ids(tmp_path) -> None:
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "v.npy", vecs)
    (tmp_path / "v.ids.txt").write_text("a\nb\nc\nd\n")
    res = load_image_vectors(tmp_path / "v.npy", item_ids=["c", "x", "a"], expected_dim=3)
    assert res.mask.tolist() == [True, False, True] and res.missing == 1
    np.testing.assert_array_equal(res.vectors, np.stack([vecs[2], np.zeros(3), vecs[0]]).astype(np.float32))
    (tmp_path / "v.ids.txt").unlink()
    (tmp_path / "v.ids.json").write_text(json.dumps(["a", "b", "c", "d"]))
    again = load_image_vectors(tmp_path / "v.npy", item_ids=["c", "x", "a"])
    np.testing.assert_array_equal(again.vectors, res.vectors)


def test_npy_errors_name_the_file_and_item(tmp_path) -> None:
    path = tmp_path / "v.npy"
    np.save(path, np.ones((2, 3), dtype=np.float32))
    with pytest.raises(DataError, match="v.ids.json or v.ids.txt"):
        load_image_vectors(path, item_ids=["a"])
    (tmp_path / "v.ids.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"item 'a' \(row 1.*dimension 3; expected 5") as err:
        load_image_vectors(path, item_ids=["a"], expected_dim=5)
    assert err.value.file == str(path)
    (tmp_path / "v.ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match="3 ids for 2 vectors"):
        load_image_vectors(path, item_ids=["a"])
    (tmp_path / "v.ids.txt").write_text("a\na\n")
    with pytest.raises(DataError, match="more than once"):
        load_image_vectors(path, item_ids=["a"])
    (tmp_path / "v.ids.txt").write_text("a\nb\n")
    np.save(path, np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32))
    with pytest.raises(DataError, match=r"item 'a' \(row 1.*NaN"):
        load_image_vectors(path, item_ids=["a", "b"])
    np.save(path, np.array([[1, 2], [3]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled object arrays are refused"):
        load_image_vectors(path, item_ids=["a"])
    with pytest.raises(DataError, match="file not found"):
        load_image_vectors(tmp_path / "none.npy", item_ids=["a"])
    with pytest.raises(ConfigError, match="supported suffixes"):
        load_image_vectors(tmp_path / "v.csv", item_ids=["a"])


def test_parquet_vectors(tmp_path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (extra 'parquet')")
    path = tmp_path / "v.parquet"
    pd.DataFrame({"item_id": ["a", "b", "c"], "vector": [[1.0, 0.0], None, [0.5, 0.5]]}).to_parquet(path)
    res = load_image_vectors(path, item_ids=["b", "c", "a", "z"], expected_dim=2)
    assert res.mask.tolist() == [False, True, True, False] and res.missing == 2
    np.testing.assert_array_equal(res.vectors[1:3], np.array([[0.5, 0.5], [1.0, 0.0]], dtype=np.float32))

    wide = tmp_path / "wide.parquet"
    pd.DataFrame({"item_id": ["a", "b"], "d0": [1.0, 2.0], "d1": [3.0, 4.0], "d2": [5.0, 6.0]}).to_parquet(wide)
    res = load_image_vectors(wide, item_ids=["b", "a"])
    np.testing.assert_array_equal(res.vectors, np.array([[2, 4, 6], [1, 3, 5]], dtype=np.float32))

    pd.DataFrame({"item_id": ["a", "b", "c"], "vector": [[1.0, 0.0], [0.0, 1.0], [1.0, 2.0, 3.0]]}).to_parquet(path)
    with pytest.raises(DataError, match=r"item 'c' \(row 3\) has a vector of dimension 3; the others have 2") as err:
        load_image_vectors(path, item_ids=["a"])
    assert err.value.file == str(path) and err.value.field == "vector"
    pd.DataFrame({"item_id": ["a", "b"], "vector": [[1.0, 0.0], [np.nan, 1.0]]}).to_parquet(path)
    with pytest.raises(DataError, match=r"item 'b' \(row 2\).*NaN"):
        load_image_vectors(path, item_ids=["a"])
    pd.DataFrame({"item_id": ["a", "a"], "vector": [[1.0, 0.0], [0.0, 1.0]]}).to_parquet(path)
    with pytest.raises(DataError, match="more than once"):
        load_image_vectors(path, item_ids=["a"])
    pd.DataFrame({"id": ["a"], "vector": [[1.0]]}).to_parquet(path)
    with pytest.raises(DataError, match="item_id"):
        load_image_vectors(path, item_ids=["a"])
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable Parquet"):
        load_image_vectors(tmp_path / "junk.parquet", item_ids=["a"])


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (68 bytes: Pillow's bomb guard trips on it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    )


def test_an_image_too_large_to_decode_safely_is_a_counted_skip_or_an_error_naming_it(models, tmp_path) -> None:
    pytest.importorskip("PIL")
    bomb = tmp_path / "poster.png"
    bomb.write_bytes(_png_header(20000, 20000))
    inputs, ids = [_images(1)[0], str(bomb)], ["i1", "i2"]
    skip = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="skip").encode(inputs, ids=ids)
    assert skip.mask.tolist() == [True, False] and "image too large to decode safely" in skip.failed[0][1]
    strict = ImageEncoder(model=str(models["vit"]), local_files_only=True, on_bad_image="raise")
    with pytest.raises(DataError, match="'i2'.*image too large to decode safely") as err:
        strict.encode(inputs, ids=ids)
    assert err.value.file == str(bomb)


def test_precomputed_vectors_of_dimension_zero_are_refused(tmp_path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((2, 0), np.float32))
    (tmp_path / "v.ids.json").write_text('["i1", "i2"]')
    with pytest.raises(DataError, match="v.npy, field 'vector': the vectors have dimension 0"):
        load_image_vectors(tmp_path / "v.npy", item_ids=["i1", "i2"])
