"""`byol-ray` command line: thin wrappers over the library. Bad input exits with status 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from byol_ray.cli import sweep as sweep_cli
from byol_ray.cli.options import add_cluster_options, add_config_options, add_verbose_option
from byol_ray.cli.tables import add_tables_command
from byol_ray.core.config import Config, ConfigError, apply_overrides, to_dict, validate
from byol_ray.core.explain import explain
from byol_ray.core.masking import mask, mask_tree, masked_console
from byol_ray.core.presets import DESCRIPTIONS, PRESETS, preset_config
from byol_ray.runtime import console


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `byol-ray` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with console.chosen(args.verbose), masked_console():
            return args.handler(args)
    except ConfigError as error:
        print(f"byol-ray: error: {mask(str(error))}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="byol-ray", description="BYOL ablations on Ray, tracked in MLflow."
    )
    add_verbose_option(parser)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    presets = commands.add_parser("presets", help="list the named presets")
    presets.set_defaults(handler=_presets)

    show = commands.add_parser("show-config", help="print the fully resolved config")
    add_config_options(show)
    show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    show.add_argument("--explain", action="store_true", help="every field instead: its value, "
                      "description, allowed values or range, and the paper section it cites")
    show.set_defaults(handler=_show_config)

    train = commands.add_parser("train", help="run one pretraining run under Ray Train")
    add_config_options(train)
    add_cluster_options(train)
    train.add_argument("--dry-run", action="store_true",
                       help="print the run's steps and its target's share of its "
                            "initialisation at the end; run nothing")
    train.add_argument("--register", default="", metavar="NAME",
                       help="also register the trained weights in the MLflow Model Registry "
                            "as a new version of NAME")
    train.add_argument("--no-ray", dest="ray", action="store_false",
                       help="run the loop in this process without Ray (one worker; debugging, "
                            "benchmarks); tracked in MLflow as any run, checkpoints in the "
                            "local --storage folder (default ~/byol_results)")
    train.set_defaults(handler=_train)

    views = commands.add_parser(
        "views", help="draw T / T' crop boxes on ImageFolder images, with the views they give")
    add_config_options(views)
    views.add_argument("--out", required=True, help="folder for views.png and views.json")
    views.add_argument("--n", type=int, default=16, help="how many train images (default 16)")
    views.add_argument("--seed", type=int, default=0, help="which images, and their crops")
    views.set_defaults(handler=_views)
    _add_eval_command(commands)
    sweep_cli.add_commands(commands)

    sync = commands.add_parser(
        "sync", help="deliver the metrics and run ends that runs buffered while their "
                     "tracking server was unreachable")
    sync.add_argument("--journal", default="", help="journal folder (default: "
                      "$BYOL_RAY_JOURNAL, else ~/.cache/byol-ray/journal)")
    sync.add_argument("--tracking-uri", default="",
                      help="only the runs logging to this URI (default: all)")
    sync.set_defaults(handler=_sync)
    add_tables_command(commands)
    for command in commands.choices.values():  # also after the command: byol-ray train --verbose
        add_verbose_option(command, default=argparse.SUPPRESS)
    return parser


def _add_eval_command(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="run one of the paper's evaluation protocols on a trained encoder")
    evaluate.add_argument("protocol",
                          choices=("linear", "finetune", "transfer", "segment", "detect"),
                          help="linear [P App. C.1], finetune (semi-supervised, App. C.2), "
                               "transfer (linear or finetune on another dataset), segment / "
                               "detect (PASCAL VOC, Table 4; App. D.4/D.5)")
    evaluate.add_argument("--run", required=True, metavar="REF",
                          help="the weights: a run id, runs:/ID, models:/NAME/VERSION, a "
                               "folder, or random-init (with --preset); segment / detect "
                               "also take supervised (torchvision's ImageNet weights on disk)")
    evaluate.add_argument("--preset", default="",
                          help="protocol settings of this preset (default: the run's)")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE",
                          help="override a config value, e.g. protocol.linear_epochs=10 or, "
                               "for transfer, data.dataset=cifar10 (repeatable)")
    evaluate.add_argument("--fraction", type=float, default=None,
                          help="finetune: share of the train labels (0.01 or 0.1 in the paper)")
    evaluate.add_argument("--mode", choices=("linear", "finetune"), default="linear",
                          help="transfer: which protocol runs on the other dataset")
    evaluate.add_argument("--trust-code", action="store_true",
                          help="build a method from outside byol-ray (method.name "
                               "package.module:Class) that the weights' config names: importing "
                               "it runs that module's code, so only for weights you trust")
    add_cluster_options(evaluate)
    evaluate.set_defaults(handler=_eval)


def resolve_config(preset: str, overrides: list[str], check_paths: bool = True) -> Config:
    """Preset + the selected method's settings + overrides, validated: what every command
    runs with."""
    return validate(preset_config(preset, overrides), check_paths=check_paths)


def _presets(_: argparse.Namespace) -> int:
    width = max(map(len, PRESETS))
    for name in PRESETS:
        print(f"{name:<{width}}  {DESCRIPTIONS[name]}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    cfg = resolve_config(args.preset, args.overrides, check_paths=False)
    shown = mask_tree(to_dict(cfg))  # no password or token of a URI on the console
    if args.explain:
        print(mask(explain(cfg)))
    elif args.format == "json":
        print(json.dumps(shown, indent=2))
    else:
        print(yaml.safe_dump(shown, sort_keys=False), end="")
        for line in target_lines(cfg):  # a YAML comment: the output still parses
            print(f"# {line}")
    return 0


def target_lines(cfg: Config) -> list[str]:
    """What `show-config` and `train --dry-run` say of the target at the run's end (issue 30):
    its share of its initialisation (`learn.target_memory`); nothing without a target."""
    from byol_ray.learn.target_memory import TargetMemory

    memory = TargetMemory.of(cfg)
    return [memory.line()] if memory else []


def _train(args: argparse.Namespace) -> int:
    if args.dry_run:
        cfg = resolve_config(args.preset, args.overrides, check_paths=False)
        print(f"{cfg.preset}: {cfg.method.name}, {cfg.train.epochs} epochs, batch "
              f"{cfg.data.batch_size} on {cfg.scaling.num_workers} worker(s); runs nothing")
        for line in target_lines(cfg):
            print(line)
        return 0
    cfg = resolve_config(args.preset, args.overrides)
    from byol_ray.jobs.pretrain.driver import run_pretraining  # heavy imports only when training
    from byol_ray.jobs.pretrain.summary import print_run_summary
    from byol_ray.runtime.ray_errors import root_cause
    from byol_ray.runtime.tracking import store
    from byol_ray.runtime.tracking.run import WEIGHTS_ARTIFACT, Run

    uri = store.resolve_tracking_uri(args.tracking_uri or cfg.tracking.tracking_uri)  # once
    try:
        result = run_pretraining(cfg, uri, args.storage, args.address, ray=args.ray)
    except ConfigError:
        raise
    except Exception as error:  # the run is FAILED in MLflow, its reason in failure_reason
        print(f"byol-ray: error: the run failed: {root_cause(error)}", file=sys.stderr)
        return 1
    print_run_summary(result.run_id, uri)
    if args.register:
        version = Run(uri, result.run_id).register_weights(args.register)
        print(f"registered: models:/{args.register}/{version}")
    print(f"weights: runs:/{result.run_id}/{WEIGHTS_ARTIFACT} (byol_ray.load_encoder)")
    return 0


def _views(args: argparse.Namespace) -> int:
    cfg = resolve_config(args.preset, args.overrides)
    if cfg.data.dataset != "imagefolder":
        raise ConfigError("data.dataset", f"views draws the crops of ImageFolder images; "
                          f"{cfg.data.dataset!r} is cropped on the device: use an imagenet "
                          "preset with --set data.root=FOLDER")
    if args.n < 1:
        raise ConfigError("--n", f"{args.n}: need at least 1 image")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a folder")
    from byol_ray.learn.data.preview import write_preview  # torch and PIL only when drawing

    try:
        shown = write_preview(cfg, out, args.n, args.seed)
    except (FileNotFoundError, ValueError) as error:  # "data.root: ..." from the loaders
        field, _, message = str(error).partition(": ")
        raise ConfigError(field, message) from None
    print(f"{shown} images: {out / 'views.png'}, boxes in {out / 'views.json'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    # Keys and types of --set are the same in every config: checked before torch and Ray load
    # (the values against the run's own config, once its weights are read).
    apply_overrides(Config(), args.overrides)
    from byol_ray.jobs.protocols.run import EvalRequest, run_protocol  # heavy imports only now

    request = EvalRequest(args.protocol, args.run, args.preset, args.overrides, args.fraction,
                          args.mode, args.tracking_uri, args.storage, args.address,
                          args.trust_code)
    print(run_protocol(request).report)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from byol_ray.runtime.tracking import logger, store

    uri = store.resolve_tracking_uri(args.tracking_uri) if args.tracking_uri else None
    delivered, left = logger.sync_journals(args.journal, uri)
    if not delivered and not left:
        print("nothing to deliver")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
