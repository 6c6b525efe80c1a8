"""The engine's training keys and their defaults, in one place, and the project's config loader.

Every experiment config is read on top of ``DEFAULTS`` and validated against the keys the project
knows: these defaults, the config's ``_base_`` files and the model and dataset configs under
``configs/``.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from srlane.config import Config, check_choice, load_config
from srlane.data.label_checks import ON_BAD_LABEL
from srlane.engine.fabric import check_settings
from srlane.engine.memory_format import SETTINGS as MEMORY_FORMAT_SETTINGS
from srlane.engine.trackers import check_loggers
from srlane.models.inference import build_inference_options

DEFAULTS: dict = dict(
    optimizer=dict(type="AdamW", lr=6e-4),  # any torch.optim class and its keyword arguments
    scheduler=dict(type="warmup_cosine", warmup_iter=800),
    total_iter=44440,  # optimizer steps of the whole run
    batch_size=40,  # images per optimizer step per process (per GPU set under "dp")
    workers=8,  # data loader worker processes
    eval_ep=3,  # validate every eval_ep epochs and always at the end
    save_interval=1000,  # write last.pth every save_interval iterations and at the end
    keep_iter_checkpoints=0,  # K > 0: every save_interval also iter_<step>.pth, the newest K kept; 0: off
    log_interval=500,  # log line every log_interval iterations
    accelerator="auto",  # "auto" (CUDA when present), "cpu", "cuda" or "mps"
    channels_last="auto",  # NHWC memory for the network's weights and activations (True), contiguous
    # (False), or "auto": the faster on this machine, measured once and cached (srlane.engine.memory_format;
    # AVX-512 CPUs and CUDA tensor cores gain, an AVX2 EPYC loses 1.1-1.5x); the same maths, float rounding
    # may differ
    precision="16-mixed",  # "16-mixed", "bf16-mixed" or "32-true"; always "32-true" on CPU
    matmul_precision="high",  # on CUDA: "high" or "medium" let float32 matmuls use TF32, "highest" not
    strategy="dp",  # "dp" (as the release), "ddp" (one process per device) or another of Fabric's names
    # (srlane.engine.fabric.STRATEGIES: ddp variants, fsdp, deepspeed_*); one device needs none
    num_nodes=1,  # machines of a multi-node "ddp" run started with torchrun --nnodes num_nodes
    seed=0,
    deterministic=False,  # True: deterministic torch/cuDNN algorithms, no cuDNN autotuning (slower on CUDA);
    # CPU runs resume bit for bit either way, CUDA runs not even so (grid_sample's backward)
    grad_clip=None,  # max gradient norm, None: off
    accumulate=1,  # micro-batches per optimizer step
    ema_decay=None,  # e.g. 0.9998: validate and save an exponential moving average of the weights
    early_stop=None,  # e.g. dict(patience=5, min_delta=0.001): stop after 5 validations without the
    # metric rising by more than 0.001 over its best (saves last.pth); None: off
    max_nonfinite=10,  # stop when more than this many steps in a row have a non-finite loss
    max_unreadable_images=10,  # training images that cannot be read are replaced; one more stops the run
    # how validation (and, unless flags say otherwise, tools/predict.py and tools/speed.py) runs the
    # network: precision "fp32" | "fp16" | "bf16" (autocast), fold_bn, channels_last, compile "none" |
    # "compile" | "cudagraph" (CUDA only); see srlane.models.inference
    inference=dict(precision="fp32", fold_bn="auto", channels_last="auto", compile="none"),
    # at each validation of a training run, with tensorboard=True: the metric, precision and recall
    # against these confidence thresholds (the validation's raw outputs decoded again at each, each
    # scored: a validation's scoring once per threshold) and the `gallery` worst images with their
    # TP, FP and FN lanes go to TensorBoard (srlane.engine.reporting); off by default
    report=dict(tensorboard=False, thresholds=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], gallery=4),
    work_dirs="work_dirs",  # runs go to <work_dirs>/<config name>/<timestamp>/
    # experiment trackers (srlane.engine.trackers.TRACKERS): any of "tensorboard", "csv", "mlflow", "wandb"
    loggers=["tensorboard"],
    # MLflow: tracking_uri None: $MLFLOW_TRACKING_URI, else sqlite:///<work_dirs>/<config name>/mlflow.db (artifacts
    # beside it in mlartifacts/); experiment None: the config's name; run_name None: the run folder's name
    mlflow=dict(tracking_uri=None, experiment=None, run_name=None, artifact_location=None),
    # W&B: mode None: $WANDB_MODE, else "offline" (no account needed); project None: the config's name
    wandb=dict(project=None, name=None, mode=None),
)

OPEN_KEYS = ("optimizer", "cut_heights")  # dicts whose own keys are free

PROJECT_CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "configs")


def known_config_files() -> list[str]:
    """The model and dataset configs shipped with the project (their keys are known keys)."""
    patterns = [os.path.join(PROJECT_CONFIGS, sub, "*.py") for sub in ("models", "datasets")]
    return sorted(path for pattern in patterns for path in glob.glob(pattern))


def load_experiment(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Read an experiment config on top of ``DEFAULTS``, apply ``--set`` overrides, validate: its
    keys, and the values of the device settings, the trackers' names, the inference options and
    the bad-label policy on any machine, before anything is built."""
    cfg = load_config(path, overrides, DEFAULTS, known_config_files(), OPEN_KEYS)
    check_settings(cfg)
    check_loggers(cfg.loggers)
    build_inference_options(cfg)
    check_choice("channels_last", cfg.channels_last, MEMORY_FORMAT_SETTINGS)
    if "dataset" in cfg:
        check_choice("dataset.on_bad_label", cfg.dataset.get("on_bad_label", "error"), ON_BAD_LABEL)
    return cfg
