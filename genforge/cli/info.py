"""`genforge list` and `genforge validate`: what there is, and whether a config holds."""

from __future__ import annotations

from typing import Annotated

import typer

from genforge.cli.common import user_errors


def list_cmd(data_root: Annotated[str | None, typer.Option(help="Extra data root.")] = None):
    """Families, modalities, presets and the data sets found on this machine."""
    from genforge.config import read_yaml
    from genforge.data import data_roots
    from genforge.modalities.base import resolve
    from genforge.registry import families, modalities, presets

    typer.echo("families:")
    for spec in families().values():
        typer.echo(f"  {spec.name:<9} {spec.description} [{', '.join(spec.modalities)}]")
    typer.echo("modalities:")
    for modality in modalities().values():
        typer.echo(f"  {modality.name:<9} {modality.description}")
    typer.echo("presets:")
    for name, file in presets().items():
        raw = read_yaml(file)
        model = raw.get("model", {})
        what = f"{raw['family']}/{model.get('arch', model.get('kind', ''))}"
        data = raw.get("data", {})
        # the data set named, else the path, else the modality's default data set
        kind = raw.get("modality") or families()[raw["family"]].modalities[0]
        default = getattr(modalities()[kind].data_config, "dataset", "-")
        typer.echo(f"  {name:<22} {what:<18} {data.get('dataset') or data.get('path') or default}")
    roots = data_roots(data_root)
    typer.echo("data sets (roots: " + ", ".join(map(str, roots)) + "):")
    sources = {name: source for m in modalities().values() if m.datasets
               for name, source in resolve(m.datasets).items()}
    for name, source in sources.items():
        found = [str(r / source.folder) for r in roots
                 if (r / source.folder).is_dir() and any((r / source.folder).iterdir())]
        typer.echo(f"  {name:<14} {found[0] if found else 'missing (data.download=true fetches)'}")


def validate(config: Annotated[str, typer.Argument(help="Preset name or YAML file.")],
             overrides: Annotated[list[str] | None, typer.Argument()] = None):
    """Check a config (types, allowed values, combinations) without building a model."""
    from genforge.registry import load_config

    with user_errors():
        cfg = load_config(config, list(overrides or []))
    dataset = getattr(cfg.data, "dataset", getattr(cfg.data, "path", ""))
    typer.echo(f"ok: {config} ({cfg.family}, {cfg.modality}, {dataset}, "
               f"{cfg.train.max_steps} steps)")
