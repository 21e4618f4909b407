"""The series objective: negative log-likelihood of the next step, and sampled future paths.

    loss = -1/(B L D) sum log p(z_t | z_<t)        (Student-t or Normal, in scaled units)
    sampling (ancestral): z_{T+k} ~ p(. | z_<T+k), each draw fed back as the next input;
    n paths in one batch, then undo the scaling, differencing and log
    calibration: with data.calibration_length > 0 the paths are widened around their median
    by conformal factors fitted on forecasts from origins in those rows (issue 17: the raw
    intervals of this model hold far less than their nominal coverage); a model refitted on
    every row before the held-out tail takes the factors of the calibrated one
    (keep_calibration), as benchmarks/series_forecast.py does for its genforge_refit_* rows
    synthetic series: families/series/synthetic.py
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution, Normal, StudentT

from genforge.config import ConfigError, TrainConfig
from genforge.families.series.config import SeriesConfig
from genforge.families.series.nets import SeriesNet
from genforge.families.series.synthetic import synthesize
from genforge.modalities.series.calibration import fit_widening, widen
from genforge.modalities.series.data import in_domain, scale, unscale
from genforge.training.contract import Batch, StepContext, bare

DEFAULT_LENGTH = 120  # steps of a synthetic series unless --length says
CALIBRATION_PATHS, CALIBRATION_SEED = 200, 12345


class SeriesObjective:
    sampling_nets = ("net",)
    capabilities = frozenset({"sample"})  # genforge.inference.sampler
    sample_keywords = ("history",)  # the past the paths continue (Python callers, eval)

    def __init__(self, cfg: SeriesConfig, data_info: dict[str, Any]) -> None:
        self.cfg, self.info = cfg, data_info
        self.max_lag, self.window = max(data_info["lags"]), data_info["window"]
        self.nets = {"net": SeriesNet(cfg, len(data_info["columns"]), data_info["lags"],
                                      data_info["period"], self.window)}
        self._calibrations: dict[int, dict[str, Any]] = {}  # horizon -> widening factors
        self._kept: dict[str, Any] | None = None  # factors fitted by another model (refit)

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.AdamW(self.nets["net"].parameters(), lr=train.lr,
                                         betas=train.betas, weight_decay=train.weight_decay)}

    def distribution(self, params: tuple[torch.Tensor, ...]) -> Distribution:
        """The next step's law from the net's outputs, in fp32 whatever the net ran in: under
        bf16 autocast the outputs are bf16, and torch has no bf16 Gamma draws (Student-t) on
        CPU; log-likelihoods and draws in bf16 would also keep only 8 bits of the scale."""
        params = tuple(p.float() for p in params)
        if len(params) == 3:
            loc, scale_, df = params
            return StudentT(df, loc, scale_)
        return Normal(*params)

    def training_step(self, batch: Batch, step: StepContext) -> dict[str, torch.Tensor]:
        x, t0 = batch.x, batch.y  # (B, max_lag + L, D), (B,)
        self._calibrations.clear()  # fitted for the weights before this step
        params = self.nets["net"](x, t0)  # each (B, L, D)
        target = x[:, self.max_lag :]  # (B, L, D)
        loss = -self.distribution(params).log_prob(target).mean()
        step.update("net", loss)
        return {"loss/nll": loss.detach()}

    def sample(self, n: int, *, seed: int, condition: torch.Tensor | None = None,
               horizon: int | None = None, history: Any = None,
               calibrated: bool | None = None, synthetic: bool = False,
               length: int | None = None) -> torch.Tensor:
        """n future paths (n, horizon, D) in the data's units, after `history` (T, D)
        (default: the whole series the model was trained with, held-out tail included).

        A run trained with data.calibration_length > 0 widens (or narrows) its paths by the
        factors fitted on that window (see `calibration`), or by factors given to
        `keep_calibration`, unless calibrated=False.
        synthetic=True gives n whole new series of `length` steps instead (n, length, D)."""
        if synthetic:
            if horizon is not None or history is not None:
                raise ConfigError("--synthetic makes whole series: it takes --length, not "
                                  "--horizon or a history")
            return synthesize(self, n, seed=seed, length=length or DEFAULT_LENGTH)
        if length is not None:
            raise ConfigError("--length applies to --synthetic series; forecasts take --horizon")
        horizon = horizon or self.cfg.horizon
        if horizon <= 0:
            raise ConfigError(f"--horizon={horizon}: must be a positive integer")
        paths = self.forecast(n, seed=seed, horizon=horizon, history=history)
        if calibrated is None:
            calibrated = self._kept is not None or self.info.get("calibration_length", 0) > 0
        if not calibrated:
            return paths
        factors = self.calibration(horizon)
        widened = torch.from_numpy(widen(paths.double().numpy(), factors)).float()
        return in_domain(widened, self.info["transform"])

    def keep_calibration(self, factors: dict[str, Any] | None) -> None:
        """Use widening factors fitted elsewhere (None: back to this run's own).

        The refit after calibration: a model trained on the rows before its calibration
        window gives the factors (its `calibration(h)`), then the same configuration trained
        on every row before the test origins forecasts, widened by those factors. The factors
        are ratios to the model's own spread, so they carry over; the refitted model cannot
        calibrate itself (its calibration rows are training rows)."""
        if factors is not None and not {"levels", "factors"} <= set(factors):
            raise ConfigError("keep_calibration: factors need 'levels' and 'factors' "
                              "(from fit_widening or calibration(h))")
        self._kept = factors

    def calibration(self, horizon: int) -> dict[str, Any]:
        """Conformal widening factors from forecasts at the calibration origins: every
        calibration_stride rows from the first calibration row, each forecast ending inside
        the calibration rows (never in the held-out tail). Fixed seeds: a run always gets the
        same factors; computed once per horizon."""
        info = self.info
        if self._kept is not None:
            return self._kept
        if info.get("calibration_length", 0) <= 0:
            raise ConfigError(f"{info.get('dataset')}: this run has no calibration rows "
                              "(train with data.calibration_length > 0)")
        h = min(horizon, info["calibration_length"])
        if h not in self._calibrations:
            values = np.asarray(info["history"], np.float64).reshape(len(info["history"]), -1)
            origins = range(info["fit_rows"], info["train_rows"] - h + 1,
                            info["calibration_stride"])
            paths = [self.forecast(CALIBRATION_PATHS, seed=CALIBRATION_SEED + k, horizon=h,
                                   history=values[:o]).double().numpy()
                     for k, o in enumerate(origins)]
            factors = fit_widening(paths, [values[o : o + h] for o in origins])
            self._calibrations[h] = factors | {"horizon": h, "origins": list(origins)}
        return self._calibrations[h]

    @torch.no_grad()
    def forecast(self, n: int, *, seed: int, horizon: int, history: Any = None
                 ) -> torch.Tensor:
        """The model's own paths (n, horizon, D), uncalibrated."""
        values = np.asarray(self.info["history"] if history is None else history, np.float64)
        values = values.reshape(len(values), -1)  # (T, D)
        z = torch.from_numpy(scale(values, self.info)).float()  # (T', D)
        need = self.max_lag + self.window
        if len(z) < need - 1:
            raise ConfigError(f"history of {len(values)} steps; this model needs at least "
                              f"{need - 1 + int(self.info['difference'])}")
        net = bare(self.nets["net"])
        device = next(net.parameters()).device
        training = net.training
        net.eval()
        path = z[-(need - 1) :].to(device).expand(n, -1, -1)  # (n, need - 1, D)
        slot = torch.zeros(n, 1, z.shape[1], device=device)  # the step to predict
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            for k in range(horizon):
                row = len(values) + k  # data row of the new step
                t0 = torch.full((n,), row - self.window + 1, device=device)
                x = torch.cat([path[:, -(need - 1) :], slot], 1)  # (n, need, D)
                params = [p[:, -1] for p in net(x, t0)]  # each (n, D)
                draw = self.distribution(params).sample()  # (n, D)
                path = torch.cat([path, draw[:, None]], 1)
        net.train(training)
        future = path[:, need - 1 :].double().cpu()  # (n, horizon, D)
        return unscale(future, torch.from_numpy(values[-1]), self.info).float()
