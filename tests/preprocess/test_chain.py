"""Preprocess chain: JSON round trip replays to identical bytes, YAML configs load, unknown
steps and bad parameters give InvalidConfig, every step round-trips through to_dict/from_dict."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import (
    Align,
    CenterCrop,
    Clahe,
    ClipPercentile,
    CropForeground,
    DicomWindow,
    Median,
    MinMax,
    NLMeans,
    PadTo,
    Preprocess,
    PreprocessingFailed,
    Resize,
    Step,
    ToChannels,
    Window,
    ZScore,
    known_steps,
)

EXAMPLES: dict[str, Step] = {
    "window": Window(level=-600, width=1500),
    "dicom_window": DicomWindow(default=(40, 400), percentiles=(1, 99), index=1),
    "clip_percentile": ClipPercentile(lo=1.0, hi=99.0, per_channel=True),
    "zscore": ZScore(per_channel=False, mask_nonzero=True),
    "minmax": MinMax(out=(-1.0, 1.0)),
    "clahe": Clahe(clip_limit=0.02, kernel_size=(8, 8)),
    "crop_foreground": CropForeground(method="canny", margin=5, min_area_fraction=0.05),
    "resize": Resize((32, 48), keep_aspect=True, pad_value="min", order=3),
    "pad_to": PadTo([40, 40], value=-1),
    "center_crop": CenterCrop(24),
    "median": Median(size=5),
    "nl_means": NLMeans(h=1.1, patch_size=3, patch_distance=4),
    "to_channels": ToChannels(1),
    "align": Align(reference=Image(np.arange(64, dtype=np.float32).reshape(1, 8, 8), spacing=(0.5, 0.7),
                                   origin=(1.0, 2.0)),
                   transform="affine", metric="mean_squares", iterations=50),
}


def test_every_registered_step_has_an_example():
    assert sorted(EXAMPLES) == known_steps()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_step_dict_round_trip(name):
    step = EXAMPLES[name]
    d = step.to_dict()
    assert d["name"] == name
    assert json.loads(json.dumps(d)) == d  # plain JSON
    again = Step.from_dict(d)
    assert type(again) is type(step) and again == step
    assert again.to_dict() == d
    assert type(step).from_dict(d) == step


CONFIG = [
    {"window": {"preset": "lung"}},
    {"crop_foreground": {}},
    {"resize": {"size": [64, 64], "keep_aspect": True}},
    {"zscore": {}},
]


def test_json_round_trip_replays_identical_bytes(ct_slice):
    chain = Preprocess([
        ClipPercentile(0.5, 99.5),
        Window(preset="mediastinum"),
        CropForeground(method="otsu", margin=2),
        Resize((48, 40), keep_aspect=True),
        Clahe(clip_limit=0.02),
        NLMeans(h=0.6),
        ZScore(),
        ToChannels(3),
    ])
    text = chain.to_json()
    loaded = Preprocess.from_json(text)
    assert loaded == chain and loaded.to_json() == text
    assert loaded.fingerprint() == chain.fingerprint()
    a, b = chain(ct_slice), loaded(ct_slice)
    assert a.pixels.shape == (3, 48, 40)
    assert np.array_equal(a.pixels, b.pixels)
    assert a.pixels.tobytes() == b.pixels.tobytes()
    assert [r["step"] for r in a.metadata["preprocess"]] == [s.name for s in chain]
    assert a.metadata["preprocess_fingerprint"] == chain.fingerprint()
    assert "preprocess" not in ct_slice.metadata


def test_chain_pickles_for_data_loader_workers(ct_slice):
    chain = Preprocess.from_config(CONFIG)
    again = pickle.loads(pickle.dumps(chain))
    assert again == chain
    assert again(ct_slice).pixels.tobytes() == chain(ct_slice).pixels.tobytes()


def test_fingerprint_tracks_parameters():
    a = Preprocess.from_config(CONFIG)
    b = Preprocess.from_config([*CONFIG[:2], {"resize": {"size": [64, 65], "keep_aspect": True}},
                                CONFIG[3]])
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == Preprocess.from_config(CONFIG).fingerprint()
    assert len(a.fingerprint()) == 64


def test_yaml_config_loads_and_runs(tmp_path, ct_slice):
    path = tmp_path / "prep.yaml"
    path.write_text(
        "preprocess:\n"
        "  - window: {preset: lung}\n"
        "  - crop_foreground:\n"
        "  - resize: {size: [64, 64], keep_aspect: true}\n"
        "  - zscore: {}\n"
    )
    chain = Preprocess.from_config(path)
    assert [type(s) for s in chain] == [Window, CropForeground, Resize, ZScore]
    assert chain == Preprocess.from_config(CONFIG)
    out = chain(ct_slice)
    assert out.pixels.shape == (1, 64, 64)
    assert abs(float(out.pixels.mean())) < 1e-4
    assert float(out.pixels.std()) == pytest.approx(1, abs=1e-3)
    bare = tmp_path / "bare.yml"
    bare.write_text("- window: {level: 40, width: 400}\n- name: minmax\n  params: {out: [0, 1]}\n"
                    "- median\n")
    assert [s.name for s in Preprocess.from_config(bare)] == ["window", "minmax", "median"]


def test_unknown_step_names_it_and_lists_known():
    with pytest.raises(InvalidConfig) as err:
        Preprocess.from_config([{"window": {"preset": "lung"}}, {"sharpen_magic": {}}])
    msg = str(err.value)
    assert "sharpen_magic" in msg and "step 2" in msg
    assert all(name in msg for name in known_steps())


def test_bad_parameters_and_shapes_give_invalid_config(tmp_path):
    with pytest.raises(InvalidConfig, match="levl"):
        Preprocess.from_config([{"window": {"levl": 40, "width": 400}}])
    with pytest.raises(InvalidConfig, match="several keys"):
        Preprocess.from_config([{"window": {}, "zscore": {}}])
    with pytest.raises(InvalidConfig, match="mapping"):
        Preprocess.from_config([{"zscore": [1, 2]}])
    with pytest.raises(InvalidConfig, match="not valid JSON"):
        Preprocess.from_json("{oops")
    with pytest.raises(InvalidConfig, match="format"):
        Preprocess.from_json('{"format": "other/9", "steps": []}')
    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess: [window: {preset: lung}\n")
    with pytest.raises(InvalidConfig, match="bad.yaml"):
        Preprocess.from_config(bad)
    with pytest.raises(InvalidConfig, match="cannot read"):
        Preprocess.from_config(tmp_path / "missing.yaml")


def test_library_failure_becomes_preprocessing_failed():
    class Broken(Step):
        name = "broken"

        def __init__(self) -> None:
            pass

        def apply(self, image: Image) -> Image:
            raise ValueError("boom")

    with pytest.raises(PreprocessingFailed, match="'broken' failed on scan.dcm: ValueError: boom"):
        Preprocess([Broken()])(Image(np.zeros((1, 4, 4)), source="scan.dcm"))


def test_describe_and_empty_chain():
    chain = Preprocess.from_config(CONFIG)
    text = chain.describe()
    assert chain.fingerprint()[:12] in text
    assert "1. window(level=None, width=None, preset='lung')" in text
    assert "4. zscore(" in text and "Subtract the mean" in text
    empty = Preprocess()
    img = Image(np.ones((1, 3, 3)))
    out = empty(img)
    assert out is not img and np.array_equal(out.pixels, img.pixels)
    assert "none" in empty.describe()


def test_fingerprint_is_computed_once_not_per_image(ct_slice, monkeypatch):
    chain = Preprocess.from_config(CONFIG)
    calls = []
    real = Preprocess.to_json

    def counting(self, indent=None):
        calls.append(indent)
        return real(self, indent)

    monkeypatch.setattr(Preprocess, "to_json", counting)
    outs = [chain(ct_slice) for _ in range(5)]
    assert len(calls) == 1, "the chain was serialised and hashed for every image"
    assert {o.metadata["preprocess_fingerprint"] for o in outs} == {chain.fingerprint()}
    assert len(calls) == 1


def test_equal_chains_hash_equally_and_work_as_keys():
    a = Preprocess.from_config(CONFIG)
    b = Preprocess.from_json(a.to_json())
    c = Preprocess.from_config(CONFIG[:3])
    assert a == b and a is not b and hash(a) == hash(b)
    assert len({a, b, c}) == 2
    cache = {a: "model-1"}
    assert cache[b] == "model-1" and c not in cache
    assert a != c and a != "not a chain"
    with pytest.raises(TypeError):
        a.steps[0] = ZScore()  # the steps are fixed once the fingerprint may be cached


def test_equal_steps_hash_equally():
    a, b = Preprocess.from_config(CONFIG)[0], Preprocess.from_config(CONFIG)[0]
    assert a == b and a is not b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Preprocess.from_config(CONFIG)[1]
