"""Audio evaluation: are the samples heard as what they were asked for, and do they sound like
the data? Measured by the audio domain classifier (eval/audio_classifier.py) on waveforms.

    Fréchet distance (FD)  between classifier features of the samples and of the real test
                           clips (prepared as the run's training clips: rate, length)
    CAS                    classification accuracy score: a sample asked for k is heard as k,
                           overall and per class
    inception-style score  exp(E KL(p(y|x) || p(y))) of the classifier's probabilities
    class histogram        share of samples heard as each class
    floors / ceilings      real vs real (training clips against the test clips, same sizes),
                           and "vocoded real": the test clips through the run's own spectrogram
                           and vocoder, which bounds what a perfect spectrogram model can score

    metrics = evaluate_audio(genforge.load("runs/fsdd-diffusion"), n=500)
    write_audio_report(metrics, "runs/fsdd-diffusion/eval", extras)   # players, spectrograms

Models are reached through genforge.api only (GenerativeModel.sample returns waveforms).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genforge.eval import metrics as M
from genforge.eval.audio.classifier import AudioClassifier, audio_classifier
from genforge.modalities.audio import dsp
from genforge.modalities.audio.data import AudioOutput, load_audio, spectrogram_images
from genforge.version import __version__

FORMAT = "genforge-audio-eval-v1"
IS_SPLITS = 10


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def score(clf: AudioClassifier, waves: np.ndarray, rate: int, labels: np.ndarray | None,
          real: dict[str, Any] | None = None) -> dict[str, Any]:
    """Features -> every metric of one set of clips (against `real` features if given)."""
    feats, probs = clf(waves, rate)
    mu, sigma = M.mean_cov(feats)
    splits = max(1, min(IS_SPLITS, len(waves) // 100))  # at least 100 clips a split
    out: dict[str, Any] = {"n": len(waves),
                           "inception_score": M.inception_score(probs, splits),
                           "class_histogram": M.class_histogram(
                               probs, clf.num_classes,
                               reference=None if real is None else real["probs"])}
    if labels is not None:
        out["accuracy"] = M.conditional_accuracy(probs, labels, clf.num_classes)
    if real is not None:
        out["fd"] = M.frechet_distance(mu, sigma, real["mu"], real["sigma"])
    return out | {"_feats": feats, "_probs": probs, "_mu": mu, "_sigma": sigma}


def _public(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if not k.startswith("_")}


def evaluate_audio(model: Any, *, n: int = 500, seed: int = 0,
                   data_root: str | Path | None = None,
                   classifier: str | Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics for metrics.json, clips for the report) of a loaded audio model."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    info, data_cfg = model.data_info, model.config.data
    clf = audio_classifier(data_cfg, data_root, path=classifier)
    timings["classifier"] = time.perf_counter() - t
    rate = int(info["sample_rate"])
    real_data = load_audio(dataclasses.replace(data_cfg, split="test", limit=None), data_root)
    # the floor: the first n training clips in the loader's file-name-hash order (a fixed mix)
    train_data = load_audio(dataclasses.replace(data_cfg, split="train", limit=n), data_root)
    real_waves = real_data.waves.numpy()
    real_labels = _labels_in(real_data, clf)
    real = score(clf, real_waves, rate, real_labels)
    real_block = {"probs": real["_probs"], "mu": real["_mu"], "sigma": real["_sigma"]}

    k = model.num_classes
    labels = np.arange(n) % k if k else None  # balanced: sample i is asked for i mod K
    t = time.perf_counter()
    with torch.no_grad():
        fake_waves = np.asarray(model.sample(n, seed=seed, label=labels), dtype=np.float32)
    timings["sampling"] = time.perf_counter() - t
    fake = score(clf, fake_waves, rate, labels, real_block)
    fake["samples_per_s"] = n / timings["sampling"]

    pick = _subset(len(train_data), min(n, len(train_data)), seed + 1)
    train_waves, train_labels = train_data.waves.numpy()[pick], _labels_in(train_data, clf, pick)
    floor = score(clf, train_waves, rate, train_labels, real_block)
    # the same training clips through the run's log-mel and vocoder: FD at the floor's sizes;
    # the test clips through them: the CAS ceiling on clips the classifier has not seen
    t = time.perf_counter()
    vocoded_waves = vocode(real_waves[:n], info)  # at most n test clips: the vocoder is slow
    timings["vocoder_per_clip"] = (time.perf_counter() - t) / len(vocoded_waves)
    vocoded = score(clf, vocode(train_waves, info), rate, train_labels, real_block)
    vocoded["accuracy"] = score(clf, vocoded_waves, rate,
                                None if real_labels is None else real_labels[:n])["accuracy"]
    metrics = {
        "format": FORMAT, "genforge": __version__, "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": str(model.path), "step": model.step, "family": model.family,
        "preset": model.config.preset, "n": n, "seed": seed,
        "protocol": {"sampling": "GenerativeModel.sample(n, seed=seed, label=i mod K): "
                     "waveforms (the run's vocoder included)",
                     "real": f"{real_data.name} test split ({real_data.split['rule']}), "
                             f"{len(real_waves)} clips prepared like the training clips",
                     "floor": f"the first {len(pick)} training clips (file-name-hash order) "
                              "vs the test clips",
                     "vocoded_real": "the floor's training clips -> the run's log-mel -> its "
                                     "vocoder, vs the test clips (FD, IS, histogram); accuracy:"
                                     " the first n test clips through the same",
                     "is_splits": IS_SPLITS, "data_info": {k2: info[k2] for k2 in (
                         "sample_rate", "n_fft", "hop", "n_mels", "frames", "db_max",
                         "top_db", "seconds") if k2 in info}},
        "classifier": clf.describe(),
        "metrics": _public(fake),
        "baselines": {"real_vs_real": _public(floor), "vocoded_real": _public(vocoded),
                      "real_test": _public(real)},
        "seconds": {key: round(v, 3) for key, v in timings.items()},
    }
    clips = {"fake": fake_waves, "fake_labels": labels, "real": real_waves[:n],
             "real_labels": None if real_labels is None else real_labels[:n],
             "vocoded": vocoded_waves, "info": info,
             "class_names": clf.class_names}
    return metrics, clips


def _labels_in(data: Any, clf: AudioClassifier, pick: np.ndarray | None = None) -> np.ndarray:
    """The data's labels as the classifier's class indices (its names may be ordered apart)."""
    if data.labels is None:
        return None
    index = {name: i for i, name in enumerate(clf.class_names)}
    labels = np.array([index[data.class_names[int(y)]] for y in data.labels])
    return labels if pick is None else labels[pick]


def vocode(waves: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Clips -> the run's log-mel images -> its vocoder: what a perfect model would output."""
    p = dsp.SpecParams.from_info(info)
    out = []
    for i in range(0, len(waves), 128):
        x = dsp.to_unit(dsp.mel_db(torch.from_numpy(waves[i : i + 128]), p), p)  # (B, M, T)
        out.append(AudioOutput().decode(x[:, None], info))
    return np.concatenate(out)


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    m, b = metrics["metrics"], metrics["baselines"]
    cas = m.get("accuracy", {}).get("accuracy")
    line = f"FD {m['fd']:.4g} (real vs real {b['real_vs_real']['fd']:.4g}, vocoded real " \
           f"{b['vocoded_real']['fd']:.4g})"
    if cas is not None:
        line += f", CAS {cas:.3f} (vocoded real {b['vocoded_real']['accuracy']['accuracy']:.3f})"
    line += f", IS {m['inception_score']['mean']:.3g}, {m['samples_per_s']:.3g} samples/s"
    return [line]


# --------------------------------------------------------------------------------------------
# The report


def wav_uri(wave: np.ndarray, rate: int) -> str:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1, 1), rate, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _clip_cells(waves: np.ndarray, labels: np.ndarray | None, info: dict[str, Any],
                names: list[str], count: int) -> str:
    from genforge.eval.images.report import png_base64

    rate = int(info["sample_rate"])
    order = list(range(min(count, len(waves))))
    if labels is not None:  # one clip of each class, in class order
        order = [int(np.flatnonzero(labels == k)[0]) for k in range(len(names))
                 if (labels == k).any()][:count]
    pictures = spectrogram_images(waves[order], info)  # (k, 1, M, T)
    cells = []
    for j, i in enumerate(order):
        caption = names[labels[i]] if labels is not None else f"#{i}"
        cells.append(f"<td><b>{html.escape(caption)}</b><br><img alt='spectrogram {i}' "
                     f"src='{png_base64(pictures[j].transpose(1, 2, 0), scale=3)}'><br>"
                     f"<audio controls preload=none src='{wav_uri(waves[i], rate)}'></audio></td>")
    return "<table class=clips><tr>" + "".join(cells) + "</tr></table>"


def _row(label: str, values: list[Any], note: str) -> str:
    cells = "".join(f"<td>{'–' if v is None else f'{v:.4g}'}</td>" for v in values)
    return f"<tr><td>{label}</td>{cells}<td class=note>{html.escape(note)}</td></tr>"


def render_audio_html(metrics: dict[str, Any], clips: dict[str, Any],
                      run_dir: Path | None) -> str:
    from genforge.eval.images.report import PAGE, histogram_plot, losses_section

    m, b = metrics["metrics"], metrics["baselines"]
    cols = [m, b["real_vs_real"], b["vocoded_real"]]

    def acc(block: dict[str, Any]) -> Any:
        return block.get("accuracy", {}).get("accuracy")

    table = ("<table class=metrics><tr><th>metric</th><th>samples</th><th>real vs real</th>"
             "<th>vocoded real</th><th></th></tr>"
             + _row("Fréchet distance (classifier features)", [c.get("fd") for c in cols],
                    "lower is better")
             + _row("CAS: heard as asked", [acc(c) for c in cols],
                    "samples: asked label; real: their own label")
             + _row("Inception-style score", [c["inception_score"]["mean"] for c in cols],
                    f"max {len(clips['class_names'])}")
             + _row("Class histogram TV to uniform",
                    [c["class_histogram"]["tv_uniform"] for c in cols], "0 = balanced")
             + "</table>")
    names = clips["class_names"]
    parts = [f"<h1>genforge eval (audio): {html.escape(metrics['run'])}</h1>",
             f"<p>{metrics['created']} · step {metrics['step']} · {metrics['family']} · "
             f"{metrics['n']} samples, seed {metrics['seed']} · "
             f"{m['samples_per_s']:.3g} samples/s (vocoder included)</p>",
             "<h2>Metrics</h2>", table]
    if m.get("accuracy"):
        per = m["accuracy"]["per_class"]
        ceiling = b["vocoded_real"]["accuracy"]["per_class"]
        rows = "".join(f"<tr><td>{html.escape(names[i])}</td><td>{_f(p)}</td>"
                       f"<td>{_f(ceiling[i])}</td></tr>" for i, p in enumerate(per))
        parts.append("<h3>CAS per class (intelligibility)</h3><table class=metrics><tr><th>"
                     f"class</th><th>samples</th><th>vocoded real</th></tr>{rows}</table>")
    uri = histogram_plot(m["class_histogram"], names)
    parts.append(f"<h2>Class histogram</h2><img alt='class histogram' src='{uri}'>")
    info = clips["info"]
    parts += ["<h2>Samples</h2>", _clip_cells(clips["fake"], clips["fake_labels"], info, names,
                                              10),
              "<h2>Real test clips</h2>", _clip_cells(clips["real"], clips["real_labels"], info,
                                                      names, 10),
              "<h2>The same real clips through the run's spectrogram and vocoder</h2>",
              _clip_cells(clips["vocoded"], clips["real_labels"], info, names, 10)]
    parts.append(losses_section(run_dir))
    record = {**metrics["protocol"], "classifier": metrics["classifier"]}
    parts.append("<h2>Protocol</h2><pre>" + html.escape(json.dumps(record, indent=1))
                 + "</pre>")
    style = "<style>table.clips td { text-align: center; font-size: 0.8em; } audio { width: " \
            "90px; }</style>"
    return PAGE.format(title="genforge eval (audio)", body=style + "\n".join(parts))


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_audio_report(metrics: dict[str, Any], clips: dict[str, Any], out: str | Path,
                       run_dir: str | Path | None = None) -> dict[str, Path]:
    """out/metrics.json and a self-contained out/report.html (an older one moved aside)."""
    from genforge.eval.images.report import prepare_out_dir

    out = Path(out)
    moved = prepare_out_dir(out)
    paths = {"metrics": out / "metrics.json", "report": out / "report.html"}
    if moved is not None:
        paths["previous"] = moved
        metrics["previous_eval"] = str(moved)
    paths["metrics"].write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    paths["report"].write_text(render_audio_html(metrics, clips, Path(run_dir) if run_dir
                                                 else None), encoding="utf-8")
    return paths


def evaluate_audio_run(model: Any, options: Any, out: str,
                       n_given: bool) -> tuple[list[str], dict[str, Path]]:
    """The audio modality's evaluator (genforge.eval.runs); (summary lines, written paths)."""
    from genforge.eval.runs import precision_field

    metrics, clips = evaluate_audio(model, n=options.n if n_given else 500, seed=options.seed,
                                    data_root=options.data_root, classifier=options.classifier)
    metrics["precision"] = precision_field(options)
    paths = write_audio_report(metrics, clips, out, run_dir=model.path)
    return summary_lines(metrics), paths
