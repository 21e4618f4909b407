"""Config: presets validate; unknown keys, wrong types and bad combinations teach."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from genforge.config import ConfigError, apply_overrides, parse_override, save_config
from genforge.registry import (
    FAMILIES,
    PRESET_DIR,
    PRESETS,
    build_run_config,
    load_config,
    resolve_preset,
)


def test_every_shipped_yaml_is_a_registered_preset_and_validates():
    shipped = sorted(p.name for p in PRESET_DIR.glob("*.yaml"))
    assert shipped == sorted(p.name for p in PRESETS.values())
    for name in PRESETS:
        cfg = load_config(name)
        assert cfg.preset == name
        assert cfg.family in FAMILIES


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("mnist-wgan-gp", ["train.lr=1e-4", "train.ema_decay=0.999"])
    save_config(cfg, tmp_path / "config.yaml")
    again = build_run_config(yaml.safe_load((tmp_path / "config.yaml").read_text()), source="x")
    assert again == cfg
    text = (tmp_path / "config.yaml").read_text()
    assert "max_steps" in text and "grad_clip" in text  # every default written out


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.lr=1e-4", ["train", "lr"], "1e-4"),  # YAML 1.1 keeps it a string...
        ("train.max_steps=500", ["train", "max_steps"], 500),
        ("train.betas=[0.0, 0.9]", ["train", "betas"], [0.0, 0.9]),
        ("model.conditional=true", ["model", "conditional"], True),
        ("train.grad_clip=null", ["train", "grad_clip"], None),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_override_values_are_typed():
    cfg = load_config("mnist-dcgan", ["train.lr=1e-4", "train.betas=[0.0, 0.9]"])
    assert cfg.train.lr == pytest.approx(1e-4)  # ...and the float field converts it
    assert cfg.train.betas == (0.0, 0.9)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.lr_sched=cosine"], "unknown key 'train.lr_sched' (did you mean 'lr_schedule'?)"),
        (["train.precision=fp16"],
         "train.precision='fp16': allowed values are 'auto', 'fp32', 'bf16'"),
        (["train.max_steps=abc"], "train.max_steps='abc': expected an integer"),
        (["train.max_steps=0"], "train.max_steps=0: must be a positive integer"),
        (["model.loss=wgan"], "model.loss='wgan': allowed values are 'bce', 'wgan-gp'"),
        (["train.stop_after=5000"], "train.stop_after=5000 is beyond train.max_steps=2000"),
        (["train.grad_accum=3"], "train.batch_size=128 is not divisible by train.grad_accum=3"),
        (["train.betas=[0.5]"], "train.betas=[0.5]: expected a list of 2 values"),
        (["train.ema_decay=1.5"], "train.ema_decay=1.5: must be in (0, 1)"),
        (["data.split=valid"], "data.split='valid': allowed values are 'train', 'test'"),
        (["data.dataset=folder"], "data.dataset='folder' needs data.path"),
        (["model.gp_weight=5"], "model.gp_weight applies only to model.loss=wgan-gp"),
        (["bogus=1"], "unknown key 'bogus'"),
        (["train=3"], "train must be a mapping"),
        (["family=flow"], "family='flow': allowed values are ar, diffusion, gan"),
    ],
)
def test_bad_configs_are_rejected_with_key_value_and_allowed(overrides, needle):
    with pytest.raises(ConfigError) as info:
        load_config("mnist-dcgan", overrides)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "mnist-dcgan.yaml" in message  # the source is named


def test_vae_specific_combinations():
    with pytest.raises(ConfigError, match="obs_sigma applies only to model.likelihood=gaussian"):
        load_config("mnist-vae", ["model.obs_sigma=0.1"])
    cfg = load_config("mnist-vae", ["model.likelihood=gaussian", "model.obs_sigma=0.1"])
    assert cfg.model.obs_sigma == 0.1


def test_unknown_preset_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'mnist-dcgan'"):
        resolve_preset("mnist-dcgn")
    with pytest.raises(ConfigError, match="no such config file"):
        resolve_preset(str(tmp_path / "missing.yaml"))


def test_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: gan\nmodel: {arch: dcgan\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ is not valid YAML"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(listy))


def test_overrides_do_not_mutate_their_input():
    raw = {"train": {"lr": 0.1}}
    merged = apply_overrides(raw, ["train.lr=0.2"])
    assert raw["train"]["lr"] == 0.1 and merged["train"]["lr"] == 0.2


def test_cli_validate_exit_codes():
    ok = subprocess.run([sys.executable, "-m", "genforge", "validate", "mnist-dcgan"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: mnist-dcgan")
    bad = subprocess.run([sys.executable, "-m", "genforge", "validate", "mnist-dcgan",
                          "train.precision=fp8"], capture_output=True, text=True)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fp8" in lines[0]
    assert "Traceback" not in bad.stderr
