"""The tabular family's `model:` section: one of six synthesizers and its sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from genforge.errors import ConfigError
from genforge.modalities.tables.config import BY_CATEGORY_UNDER_DP

if TYPE_CHECKING:
    from genforge.config import RunConfig

KINDS = ("copula", "tvae", "ctgan", "tabddpm", "aim", "mst")
MARGINAL = ("aim", "mst")


@dataclass
class TabularConfig:
    """kind: copula (Gaussian copula over the marginals), tvae (a VAE on mode-specific
    normalised rows), ctgan (a conditional WGAN-GP with a PacGAN critic and training-by-
    sampling), tabddpm (Gaussian diffusion on numbers, multinomial diffusion on categories),
    or the differentially private marginal synthesizers aim and mst (marginal.py: noisy
    marginals and a graphical model; they need privacy.epsilon).

    max_modes: mixture components per numeric column (tvae, ctgan); hidden/layers: MLP sizes;
    latent_dim: TVAE latent and CTGAN noise size; pac: rows per PacGAN critic input;
    timesteps / schedule: TabDDPM's noise levels; aux_weight: weight of TabDDPM's auxiliary
    cross-entropy of the predicted categories (D3PM's hybrid loss; 0 = the KL alone);
    condition_on_target: TabDDPM's denoiser is told the data.target class (drawn by its
    training frequencies when sampling); sample_chunk: rows generated per pass;
    condition_share: under DP, CTGAN's share of privacy.epsilon (as if spent alone) for the
    Gaussian release of the category counts its conditions are drawn from (default 0.1).

    aim / mst: workload: the marginals the synthetic data should preserve, "a+b[+c]" per
    entry (default: all pairs for mst, all triples for aim, as in the papers; workload_degree
    changes the default's size); bins: equal-width bins per numeric column (an int column with
    fewer values keeps them all); one_way_share: MST's share of rho for the one-way marginals
    (the paper's 1/3; the rest is halved between selection and measurement); rounds: AIM's
    initial T (0: the paper's 16 x columns), which sets its first noise scale;
    max_model_size: AIM's cap on the junction tree's size in MB (the paper's 80);
    round_iters / estimation_iters: mirror-descent steps per AIM round / in the final fit;
    max_domain: the most values one discretised column may have.
    """

    kind: Literal["copula", "tvae", "ctgan", "tabddpm", "aim", "mst"] = "tabddpm"
    hidden: int = 256
    layers: int = 3
    latent_dim: int = 128
    max_modes: int = 10
    dropout: float = 0.0
    # tvae
    loss_factor: float = 2.0
    # ctgan
    pac: int = 10
    gp_weight: float = 10.0
    tau: float = 0.2
    # tabddpm
    timesteps: int = 100
    schedule: Literal["cosine", "linear"] = "cosine"
    aux_weight: float = 0.2  # Adult, ~3000 steps: TSTR F1 0.34 at 0, 0.63-0.64 at 0.2
    resample: int = 5  # TabDDPM RePaint rounds per step for where-conditions too rare to reject
    # TabDDPM: the denoiser is told the data's target class (data.target), drawn from its
    # training frequencies when sampling, or fixed by a where-condition on it
    condition_on_target: bool = False
    # ctgan under DP: the standalone epsilon share of privacy.epsilon spent on releasing the
    # category counts its conditions are drawn from (a Gaussian mechanism, see ctgan.py)
    condition_share: float = 0.1
    # aim, mst
    workload: tuple[str, ...] | None = None
    workload_degree: int = 0  # 0: 2 for mst, 3 for aim
    bins: int = 32
    one_way_share: float = 1 / 3
    rounds: int = 0
    max_model_size: float = 80.0
    round_iters: int = 100
    estimation_iters: int = 1000
    max_domain: int = 1000
    # all
    sample_chunk: int = 20000
    max_rejection_rounds: int = 50  # conditional sampling by rejection gives up after these

    def __post_init__(self) -> None:
        for key in ("hidden", "layers", "latent_dim", "max_modes", "pac", "timesteps",
                    "sample_chunk", "max_rejection_rounds", "resample", "bins", "round_iters",
                    "estimation_iters", "max_domain"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key}={getattr(self, key)}: must be a positive integer")
        if not self.aux_weight >= 0.0:
            raise ConfigError(f"model.aux_weight={self.aux_weight}: must be >= 0")
        if not 0.0 < self.condition_share < 1.0:
            raise ConfigError(f"model.condition_share={self.condition_share}: must be in (0, 1)")
        if self.workload_degree < 0 or self.rounds < 0:
            raise ConfigError("model.workload_degree and model.rounds must be >= 0 (0: the "
                              "paper's default)")
        if not 0.0 < self.one_way_share < 1.0:
            raise ConfigError(f"model.one_way_share={self.one_way_share}: must be in (0, 1)")
        if not self.max_model_size > 0:
            raise ConfigError(f"model.max_model_size={self.max_model_size}: must be > 0 (MB)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout}: must be in [0, 1)")

    def check_run(self, cfg: RunConfig) -> None:
        t = cfg.train
        if self.kind == "ctgan" and t.batch_size % (self.pac * t.grad_accum):
            raise ConfigError(f"model.kind=ctgan: train.batch_size={t.batch_size} must be a "
                              f"multiple of model.pac={self.pac} x train.grad_accum")
        if self.kind == "copula" and t.ema_decay is not None:
            raise ConfigError("model.kind=copula counts statistics, it has no weights to "
                              "average: drop train.ema_decay")
        privacy = getattr(cfg, "privacy", None)
        private = privacy is not None and (getattr(privacy, "epsilon", None) is not None or
                                           getattr(privacy, "noise_multiplier", None) is not None)
        if private and getattr(cfg.data, "sampling", "rows") == "by-category":
            raise ConfigError(BY_CATEGORY_UNDER_DP)
        if self.kind in MARGINAL and not (privacy is not None and
                                          getattr(privacy, "epsilon", None) is not None):
            raise ConfigError(f"model.kind={self.kind} calibrates its noise to privacy.epsilon: "
                              "set privacy.epsilon (e.g. 1) and privacy.delta (e.g. 1e-5)")
        if self.kind == "copula" and private:
            raise ConfigError("model.kind=copula is not trained by gradients, so DP-SGD cannot "
                              "privatise it: use tvae, ctgan or tabddpm with privacy.epsilon")
        if self.kind == "ctgan" and private and self.pac != 1:
            raise ConfigError(f"model.pac={self.pac} with privacy: a PacGAN critic takes pac rows "
                              "as one example, so clipping would bound groups, not rows; set "
                              "model.pac=1")
        if self.kind == "ctgan" and private and self.gp_weight > 0:
            raise ConfigError(f"model.gp_weight={self.gp_weight} with privacy: the gradient "
                              "penalty differentiates the critic twice, which Opacus's "
                              "per-sample gradients do not support; set model.gp_weight=0 "
                              "(or use tvae / tabddpm, the steadier DP routes)")

    def check_data(self, info: dict[str, Any]) -> None:
        if info.get("kind") != "tables":
            raise ConfigError(f"the tabular family learns tables, not {info.get('kind')}")
