"""Shared helpers: tiny configs that train in a second, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skips import skip_because

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision=auto picks bf16 on AVX-512 BF16 / AMX machines: recorded losses and exact
# comparisons must not depend on which machine runs the tests (subprocesses inherit this)
os.environ.setdefault("GENFORGE_AUTO_PRECISION", "fp32")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Per family: overrides that shrink a preset to a model and data set that train in seconds.
TINY_MODEL = {
    "gan": ["model.width=8", "model.latent_dim=8", "model.mlp_hidden=32", "model.embed_dim=4"],
    "vae": ["model.hidden=32", "model.width=8", "model.latent_dim=4", "model.complete_steps=5"],
    "ar": ["model.n_layer=1", "model.n_head=2", "model.n_embd=16",
           "model.max_new_tokens=8", "data.block_size=16", "data.vocab_size=300",
           "train.warmup_steps=0"],
    "diffusion": ["model.channels=[8,16]", "model.attention=[false,true]", "model.norm_groups=4",
                  "model.attention_head_dim=4", "model.sampling_steps=3",
                  "model.complete_steps=4", "model.repaint_jump=2", "model.repaint_resample=2",
                  "train.warmup_steps=0"],
    "series": ["model.hidden=8", "model.layers=1", "model.season_dim=2", "model.horizon=6",
               "data.window=12", "train.warmup_steps=0"],
}
TINY_LOOP = [
    "data.limit=128", "train.batch_size=16", "train.max_steps=4", "log.every=1",
    "log.sample_every=2", "log.sample_n=8", "log.checkpoint_every=2", "log.progress=false",
    "log.tensorboard=false", "train.ema_start=0",
]


def tiny(family: str, *extra: str) -> list[str]:
    return [*TINY_MODEL[family], *TINY_LOOP, *extra]


def tiny_config(preset: str, *extra: str):
    from genforge.config import read_yaml
    from genforge.registry import PRESET_DIR, PRESETS, load_config

    family = read_yaml(PRESET_DIR / PRESETS[preset])["family"]
    return load_config(preset, tiny(family, *extra))


def pytest_configure(config) -> None:
    import skips  # the allowed skip reasons; under CI any other skip fails

    config.pluginmanager.register(skips, "genforge-skips")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "fashion-mnist").is_dir():
        skip_because("no-shared-data", f"{SHARED_DATA} is not present on this machine")
    return SHARED_DATA


# --- serving: small limits, tiny runs; `models` and `client` build on a module's `runs` --------

SMALL = dict(max_n=8, max_new_tokens=24, max_steps=8, max_batch=32, max_wait_ms=20)


def train_tiny(base: Path, specs: dict[str, tuple[str, str, list[str]]]) -> dict[str, Path]:
    """name -> (preset, family, overrides): each trained for two tiny steps under base/name."""
    import genforge

    out = {}
    for name, (preset, family, extra) in specs.items():
        cfg = genforge.load_config(preset, tiny(family, "train.max_steps=2", *extra))
        out[name] = genforge.train(cfg, out=base / name).run_dir
    return out


@pytest.fixture(scope="module")
def models(runs):
    import genforge

    return {name: genforge.load(path) for name, path in runs.items()}


@pytest.fixture
def client(models):
    from fastapi.testclient import TestClient

    from genforge.serve import Limits, create_app

    with TestClient(create_app(models=models, limits=Limits(**SMALL))) as c:
        yield c
