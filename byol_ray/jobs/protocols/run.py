"""`byol-ray eval PROTOCOL --run REF`: the paper's protocols on a trained encoder.

Each protocol is its own MLflow run in the pretraining run's experiment, nested under it (tags
`role=eval`, `protocol`, `pretrain_run_id`), with metrics `eval_<protocol>/<split>_top1`:

- `linear` [P App. C.1]: the learning rate is chosen from `protocol.linear_lrs` by fitting on
  the train split minus a held-out part and scoring on that part (the test split never
  chooses), and the chosen rate's head refit on the whole train split is scored on test. Every
  rate's heads, choice and refit, train together in one job on one forward of the frozen
  encoder per batch (`byol_ray.jobs.protocols.linear_pass`). Metrics `eval_linear/{val_top1,
  test_top1, lr, val_top1_lr_<lr>}`; the held-out indices are the artifact
  `linear_holdout.json`.
- `finetune` [P App. C.2]: the whole network on a class-balanced, seeded `protocol.fraction`
  of the train labels; the learning rate chosen from `protocol.finetune_lrs` as `linear`'s,
  on a held-out part of that subset (`protocol.finetune_holdout`), refit on the whole subset,
  scored on test: `eval_finetune_1pct/{val_top1, test_top1, lr, val_top1_lr_<lr>}` (10pct,
  ...); artifacts `finetune_1pct_subset.json` (the subset) and `finetune_1pct_holdout.json`.
- `transfer`: `linear` or `finetune` (`mode`) on another dataset than the pretraining one
  (`--set data.dataset=... data.root=...`): `eval_transfer_linear/...`.
- `segment`, `detect` [P §4, Table 4, App. D.4/D.5]: FCN and Faster R-CNN + FPN fine-tuned on
  PASCAL VOC (`byol_ray.jobs.protocols.dense`): `eval_segment/val_miou`, `eval_detect/test_ap50`.

`REF` is what `byol_ray.load_encoder` takes, or `random-init` (the untrained encoder of
`--preset` at `train.seed`: the paper's 1.4% row), or for `segment` / `detect` `supervised`
(torchvision's ImageNet weights of `--preset`'s encoder, read from `model.supervised_weights`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import ray
import torch

from byol_ray.core.config import Config, ConfigError, apply_overrides, validate
from byol_ray.core.methods import RANDOM_INIT
from byol_ray.core.presets import PRESETS, get_preset
from byol_ray.jobs.pretrain.driver import preflight
from byol_ray.jobs.protocols import RANDOM_INIT_REF, SUPERVISED_REF
from byol_ray.jobs.protocols.dense import run_dense
from byol_ray.jobs.protocols.jobs import Job, fit, lr_grid
from byol_ray.jobs.protocols.linear_pass import LinearPass, fit_linear_pass
from byol_ray.jobs.protocols.splits import balanced_subset, holdout_split, labels_of
from byol_ray.learn.data import load_splits
from byol_ray.learn.methods import build_method
from byol_ray.learn.models.dense import supervised_encoder
from byol_ray.learn.models.encoders import build_encoder
from byol_ray.runtime.cluster import absolute_storage
from byol_ray.runtime.console import say
from byol_ray.runtime.lifecycle import tracked_run
from byol_ray.runtime.tracking import queries, store
from byol_ray.runtime.weights import fetch_weights, read_config, read_state

PROTOCOLS = ("linear", "finetune", "transfer")
DENSE_PROTOCOLS = ("segment", "detect")  # transfer to other vision tasks (Table 4)


@dataclass
class EvalRequest:
    """What `byol-ray eval` (or a sweep trial's `--eval`) asks for."""

    protocol: str  # one of PROTOCOLS
    ref: str  # weights: run id, runs:/, models:/, folder, or "random-init"
    preset: str = ""  # protocol settings (default: the run's preset)
    overrides: list[str] = field(default_factory=list)
    fraction: float | None = None  # finetune: share of train labels (default protocol.fraction)
    mode: str = "linear"  # transfer: linear | finetune
    tracking_uri: str = ""
    storage: str = ""
    address: str | None = None
    trust_code: bool = False  # build a method from outside the package that the weights name


@dataclass
class ProtocolResult:
    """A finished protocol: its key (`linear`, `finetune_1pct`, ...), MLflow run, metrics."""

    key: str
    run_id: str
    metrics: dict[str, float]
    report: str  # what the command prints


def run_protocol(request: EvalRequest, with_tune: bool = True,
                 skip_finished: bool = False) -> ProtocolResult:
    """Resolve weights and config (bad input raises ConfigError before Ray starts), run the
    protocol as Ray Train jobs, and record it in its own MLflow run."""
    if request.protocol not in PROTOCOLS + DENSE_PROTOCOLS:
        raise ConfigError("protocol", f"{request.protocol!r} is not one of: "
                                      f"{', '.join(PROTOCOLS + DENSE_PROTOCOLS)}")
    uri = store.resolve_tracking_uri(request.tracking_uri)
    store.check_tracking_store(uri)  # before anything reads weights or logs there
    if request.protocol in DENSE_PROTOCOLS:
        cfg, encoder, pretrain_id = _resolve_dense(request, uri)
        dense = run_dense(cfg, request.protocol, encoder, request.ref, pretrain_id or None, uri,
                          request.storage or None, request.address)
        return ProtocolResult(request.protocol, dense.run_id, dense.metrics, dense.report)
    cfg, state, pretrain_id, pretrain_dataset = _resolve(request, uri)
    key = protocol_key(request, cfg)
    preflight(cfg)
    if skip_finished and pretrain_id:
        done = queries.finished_eval_run(uri, cfg.tracking.experiment, pretrain_id, key)
        if done:
            return ProtocolResult(key, done, {}, f"{key}: finished before (MLflow run {done})")
    mode = request.mode if request.protocol == "transfer" else request.protocol
    choice, final = protocol_jobs(cfg, mode, _train_labels(cfg))  # ConfigError: before Ray
    cfg.tracking.run_name = f"eval-{key}"
    with tracked_run(cfg, uri, request.address, parent_run_id=pretrain_id or None, tags={
        "role": "eval", "protocol": key, "pretrain_run_id": pretrain_id or request.ref,
        "weights_ref": request.ref, "eval_dataset": cfg.data.dataset,
        "pretrain_dataset": pretrain_dataset}) as run:
        storage = absolute_storage(request.storage or "~/ray_results")
        name = f"eval-{key}-{run.run_id[:8]}"
        state_ref = ray.put(state)
        choice, final = (job and dataclasses.replace(job, encoder_state=state_ref)
                         for job in (choice, final))
        protocol = _linear if mode == "linear" else _finetune
        metrics, artifacts, lines = protocol(cfg, choice, final, key, name, storage, with_tune)
        run.log_metrics(metrics, step=0)
        for artifact, data in artifacts.items():
            run.log_json(artifact, data)
    source = f"run {pretrain_id}" if pretrain_id else request.ref
    lines = [f"{key} evaluation of {source} ({cfg.method.name}, pretrained on "
             f"{pretrain_dataset}) on {cfg.data.dataset}:", *lines,
             f"  MLflow run {run.run_id} in experiment {cfg.tracking.experiment!r} ({uri}), "
             f"tag pretrain_run_id={pretrain_id or request.ref}"]
    return ProtocolResult(key, run.run_id, metrics, "\n".join(lines))


def protocol_key(request: EvalRequest, cfg: Config) -> str:
    """The protocol's name in tags and metric prefixes: linear, finetune_1pct, transfer_linear,
    transfer_finetune_10pct."""
    mode = request.mode if request.protocol == "transfer" else request.protocol
    key = mode if mode == "linear" else f"finetune_{cfg.protocol.fraction * 100:g}pct"
    return f"transfer_{key}" if request.protocol == "transfer" else key


def _resolve_dense(request: EvalRequest, uri: str) -> tuple[Config, torch.nn.Module, str]:
    """(eval config, encoder, pretraining run id or "") of `segment` / `detect`: as `_resolve`,
    plus `supervised`; the pretraining dataset need not be on this machine."""
    if request.ref == SUPERVISED_REF:
        if not request.preset:
            raise ConfigError("--preset", "needed with --run supervised: which encoder to "
                                          "load torchvision's ImageNet weights into")
        cfg = _eval_config(get_preset(request.preset), request, check_paths=False)
        return cfg, supervised_encoder(cfg.model), ""
    cfg, state, pretrain_id, _ = _resolve(request, uri, check_paths=False)
    encoder = build_encoder(cfg.model)[0]
    encoder.load_state_dict(state)
    return cfg, encoder, pretrain_id


def _resolve(request: EvalRequest, uri: str,
             check_paths: bool = True) -> tuple[Config, dict, str, str]:
    """(eval config, encoder state_dict, pretraining run id or "", pretraining dataset)."""
    if request.mode not in ("linear", "finetune"):
        raise ConfigError("--mode", f"{request.mode!r} is not one of: linear, finetune")
    if request.ref == RANDOM_INIT_REF:
        if not request.preset:
            raise ConfigError("--preset", "needed with --run random-init: which encoder to "
                                          "initialise")
        cfg = _eval_config(get_preset(request.preset), request, [f"method.name={RANDOM_INIT.name}"],
                           check_paths)
        torch.manual_seed(cfg.train.seed)  # as a random_init pretraining run at this seed
        state = build_method(cfg).encoder.state_dict()
        return cfg, state, "", cfg.data.dataset
    with fetch_weights(request.ref, uri) as (folder, run_id):
        pretrained = read_config(folder, request.ref, request.trust_code)
        state = read_state(folder, "encoder", request.ref)
    preset = request.preset or pretrained.preset
    if preset in PRESETS:  # the protocols' settings scaled for this preset
        settings = get_preset(preset)
        pretrained.protocol, pretrained.segment, pretrained.detect = (
            settings.protocol, settings.segment, settings.detect)
    cfg = _eval_config(pretrained, request, check_paths=check_paths)
    same = cfg.data.dataset == pretrained.data.dataset
    if request.protocol == "transfer" and same:
        raise ConfigError("data.dataset", f"transfer needs another dataset than the "
                          f"pretraining one ({pretrained.data.dataset}); e.g. --set "
                          "data.dataset=cifar10 --set data.root=DIR")
    if request.protocol != "transfer" and not same:
        raise ConfigError("data.dataset", f"{cfg.data.dataset} is not the pretraining "
                          f"dataset ({pretrained.data.dataset}): use `eval transfer`")
    return cfg, state, run_id or "", pretrained.data.dataset


def _eval_config(base: Config, request: EvalRequest, extra: list[str] = (),
                 check_paths: bool = True) -> Config:
    """The pretraining config with every labelled image in play, the request's fraction and
    overrides applied, validated (`check_paths`: its dataset's folder too)."""
    overrides = ["data.max_eval_images=0", *extra, *request.overrides]
    if request.fraction is not None:
        overrides.append(f"protocol.fraction={request.fraction}")
    return validate(apply_overrides(base, overrides), check_paths=check_paths)


def _train_labels(cfg: Config) -> torch.Tensor:
    """Every label of the train split the protocols draw from (no image decoded)."""
    return labels_of(load_splits(cfg.data).train)


def protocol_jobs(cfg: Config, mode: str, labels: torch.Tensor) -> tuple[Job | None, Job]:
    """`mode`'s (lr choice, final fit), encoder weights and lr unset: `linear_jobs` or
    `finetune_jobs`."""
    return (linear_jobs if mode == "linear" else finetune_jobs)(cfg, None, labels)


def linear_jobs(cfg: Config, state_ref, labels: torch.Tensor) -> tuple[Job, Job]:
    """The linear protocol's two kinds of job: the lr choice (fit on train minus the held-out
    part, scored on that part) and the final fit (all of train, scored on test); lr unset."""
    p = cfg.protocol
    fit_part, held_out = holdout_split(labels, p.val_fraction, p.subset_seed)
    choice = Job(cfg, state_ref, "linear", fit_part, "train", held_out, lr=0.0,
                 epochs=p.linear_epochs, batch_size=p.linear_batch_size, weight_decay=0.0,
                 seed=cfg.train.seed)
    final = dataclasses.replace(choice, fit_indices=list(range(len(labels))),
                                score_split="test", score_indices=None)
    return choice, final


def finetune_jobs(cfg: Config, state_ref, labels: torch.Tensor) -> tuple[Job | None, Job]:
    """Fine-tuning's two kinds of job on the class-balanced label subset: the lr choice (fit
    on the subset minus its held-out part, scored on that part: train images, never test) and
    the final fit (the whole subset, scored on test); no choice (None) where
    `protocol.finetune_lrs` holds one rate. ConfigError where a class of the subset has fewer
    than two images: none could be held out and still leave one to fit on."""
    p = cfg.protocol
    subset = balanced_subset(labels, p.fraction, p.subset_seed)
    final = Job(cfg, state_ref, "finetune", subset, "test", None, lr=0.0,
                epochs=p.finetune_epochs, batch_size=p.finetune_batch_size,
                weight_decay=p.finetune_weight_decay, seed=cfg.train.seed)
    if len(p.finetune_lrs) == 1:
        return None, final
    fewest = int(torch.unique(labels[subset], return_counts=True)[1].min())
    if fewest < 2:
        raise ConfigError("protocol.fraction", f"{p.fraction:g} gives {fewest} labelled image "
                          f"per class on {cfg.data.dataset}; choosing among protocol."
                          f"finetune_lrs ({len(p.finetune_lrs)} rates) holds out "
                          "protocol.finetune_holdout of each class and needs at least 2 per "
                          "class: raise it (--fraction), or give one rate "
                          f"(--set protocol.finetune_lrs=[{p.finetune_lrs[0]:g}])")
    fit_part, held_out = holdout_split(labels[subset], p.finetune_holdout, p.subset_seed)
    choice = dataclasses.replace(final, fit_indices=[subset[i] for i in fit_part],
                                 score_split="train", score_indices=[subset[i] for i in held_out])
    return choice, final


def choose_lr(val_top1: dict[float, float]) -> float:
    """The learning rate with the best held-out top-1; ties go to the one listed first."""
    return max(val_top1, key=lambda lr: val_top1[lr])


def _linear(cfg: Config, choice: Job, final: Job, key: str, name: str, storage: str,
            with_tune: bool) -> tuple[dict[str, float], dict, list[str]]:
    """Every rate fitted on train minus the held-out part and on all of train in one job (one
    encoder pass per batch, `linear_pass`); the rate chosen on the held-out part, its refit
    head scored on test (the other refit heads' scores are not kept: test never chooses)."""
    p, lrs, prefix = cfg.protocol, cfg.protocol.linear_lrs, f"eval_{key}"
    job = LinearPass(cfg, choice.encoder_state, lrs, choice.fit_indices, choice.score_indices,
                     epochs=p.linear_epochs, batch_size=p.linear_batch_size, seed=final.seed)
    result = fit_linear_pass(job, name, storage, in_trial=not with_tune)
    val = {lr: result[f"val_top1_{i}"] for i, lr in enumerate(lrs)}
    best, held = choose_lr(val), len(choice.score_indices)
    metrics = {f"{prefix}/train_images": float(len(final.fit_indices)),
               f"{prefix}/val_top1": val[best], f"{prefix}/val_images": float(held),
               f"{prefix}/lr": best, f"{prefix}/test_images": result["test_images"],
               f"{prefix}/test_top1": result[f"test_top1_{lrs.index(best)}"]}
    metrics |= {f"{prefix}/val_top1_lr_{lr:g}": v for lr, v in val.items()}
    per_lr_text = ", ".join(f"{lr:g}: {v:.2f}" for lr, v in val.items())
    lines = [f"  learning rate chosen on a held-out part of train ({held} images; val top-1 "
             f"per lr {per_lr_text}): {best:g}",
             f"  val top-1 {val[best]:.2f} %   test top-1 {metrics[f'{prefix}/test_top1']:.2f} "
             f"% (refit on all {len(final.fit_indices)} train images, {p.linear_epochs} epochs, "
             f"every rate's heads in one pass; {int(result['test_images'])} test images)"]
    holdout = {"held_out": choice.score_indices, "seed": p.subset_seed,
               "val_fraction": p.val_fraction}
    return metrics, {f"{key}_holdout.json": holdout}, lines


def _finetune(cfg: Config, choice: Job | None, final: Job, key: str, name: str, storage: str,
              with_tune: bool) -> tuple[dict[str, float], dict, list[str]]:
    """Choose the lr on the held-out part of the label subset (unless there is one rate),
    fine-tune the whole network on all of the subset at it, score on test."""
    p = cfg.protocol
    metrics, lines = _choose_and_refit(choice, final, p.finetune_lrs, "the label subset", key,
                                       name, storage, with_tune)
    lines.append(f"  fine-tuned on {len(final.fit_indices)} labelled train images "
                 f"({p.fraction:.0%}, class-balanced, seed {p.subset_seed}) for "
                 f"{p.finetune_epochs} epochs at lr {metrics[f'eval_{key}/lr']:g}: test top-1 "
                 f"{metrics[f'eval_{key}/test_top1']:.2f} % "
                 f"({int(metrics[f'eval_{key}/test_images'])} test images)")
    artifacts = {f"{key}_subset.json": {"indices": final.fit_indices, "fraction": p.fraction,
                                        "seed": p.subset_seed}}
    if choice is not None:
        artifacts[f"{key}_holdout.json"] = {"held_out": choice.score_indices,
                                            "seed": p.subset_seed,
                                            "holdout": p.finetune_holdout}
    return metrics, artifacts, lines


def _choose_and_refit(choice: Job | None, final: Job, lrs: tuple[float, ...], where: str,
                      key: str, name: str, storage: str,
                      with_tune: bool) -> tuple[dict[str, float], list[str]]:
    """Fine-tuning's choice (the encoder learns: one job per rate): each rate of `lrs` fit by
    `choice` and scored on its held-out
    train images (`lr_grid`: a Tune grid or one job after another), the best refit by `final`
    and scored on test; without a `choice` (one rate) that rate. Metrics `eval_<key>/{lr,
    test_top1, test_images, train_images}` and, with a choice, `val_top1`, `val_images`,
    `val_top1_lr_<lr>`; the report line of the choice."""
    prefix, lines, best = f"eval_{key}", [], lrs[0]
    metrics = {f"{prefix}/train_images": float(len(final.fit_indices))}
    if choice is not None:
        say(f"[byol-ray] {key}: fitting {len(lrs)} learning rates on {where}, each scored on "
            f"{len(choice.score_indices)} held-out images")
        per_lr = lr_grid(choice, lrs, name, storage, with_tune)
        val = {lr: per_lr[lr]["top1"] for lr in lrs}
        best, held = choose_lr(val), len(choice.score_indices)
        metrics |= {f"{prefix}/val_top1": val[best], f"{prefix}/val_images": float(held)}
        metrics |= {f"{prefix}/val_top1_lr_{lr:g}": v for lr, v in val.items()}
        per_lr_text = ", ".join(f"{lr:g}: {v:.2f}" for lr, v in val.items())
        lines.append(f"  learning rate chosen on a held-out part of {where} ({held} images; "
                     f"val top-1 per lr {per_lr_text}): {best:g}")
    say(f"[byol-ray] {key}: final fit at lr {best:g} on {len(final.fit_indices)} images")
    test = fit(dataclasses.replace(final, lr=best), f"{name}-final", storage,
               in_trial=not with_tune)
    metrics |= {f"{prefix}/test_top1": test["top1"], f"{prefix}/lr": best,
                f"{prefix}/test_images": test["scored"]}
    return metrics, lines


def check_trial_evals(cfg: Config, protocols: list[str]) -> None:
    """A sweep's `--eval` on a trial's config, before any trial starts: the ConfigError that
    `finetune` would raise inside the trial (see `finetune_jobs`)."""
    if "finetune" in protocols:
        cfg = _eval_config(cfg, EvalRequest("finetune", ""))
        finetune_jobs(cfg, None, _train_labels(cfg))


def evaluate_trial(protocols: list[str], run_id: str, tracking_uri: str, storage: str,
                   overrides: list[str]) -> None:
    """A sweep trial's `--eval`: the protocols on its finished run, one after another inside the
    trial (no Tune grid of its own), skipping those already FINISHED (a resumed trial)."""
    for protocol in protocols:
        request = EvalRequest(protocol, run_id, overrides=overrides, tracking_uri=tracking_uri,
                              storage=storage, trust_code=True)  # the trial's own method
        say(run_protocol(request, with_tune=False, skip_finished=True).report)
