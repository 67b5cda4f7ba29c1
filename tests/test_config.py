"""Config: presets, dotted overrides, validation naming the field and what is allowed."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byol_ray.core.config import (
    Config,
    ConfigError,
    apply_overrides,
    flatten,
    from_dict,
    leaves,
    to_dict,
    validate,
)
from byol_ray.core.presets import METHOD_SETTINGS, PRESETS, get_preset, preset_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_and_round_trips(name):
    cfg = get_preset(name)
    validate(cfg, check_paths=False)
    assert from_dict(to_dict(cfg)) == cfg
    assert cfg.preset == name


def test_imagenet_presets_carry_the_paper_settings():
    main, ablation = get_preset("imagenet"), get_preset("imagenet-300")
    assert (main.optim.base_lr, main.optim.weight_decay, main.method.tau_base) == (
        0.2, 1.5e-6, 0.996)
    assert (ablation.optim.base_lr, ablation.optim.weight_decay, ablation.method.tau_base) == (
        0.3, 1e-6, 0.99)
    for cfg in (main, ablation, get_preset("imagenet100")):
        assert cfg.model.encoder == "resnet50" and cfg.data.image_size == 224
        assert cfg.data.batch_size == 4096 and cfg.optim.lr(4096) == pytest.approx(
            cfg.optim.base_lr * 16)
        assert (cfg.optim.momentum, cfg.optim.trust_coefficient) == (0.9, 1e-3)
        assert cfg.optim.warmup_epochs == 10 and cfg.optim.exclude_bias_and_bn
        assert (cfg.model.proj_hidden_dim, cfg.model.proj_dim) == (4096, 256)
        assert cfg.augment.blur_p == (1.0, 0.1) and cfg.augment.solarize_p == (0.0, 0.2)


def test_fine_tuning_chooses_from_the_paper_s_rates_and_old_configs_keep_their_one_rate():
    for name in PRESETS:  # [P App. C.2]: {0.01, 0.02, 0.05, 0.1, 0.005}
        assert get_preset(name).protocol.finetune_lrs == (0.01, 0.02, 0.05, 0.1, 0.005)
    saved = to_dict(get_preset("cpu-mini"))  # as runs saved it before the lr grid
    del saved["protocol"]["finetune_lrs"]
    saved["protocol"]["finetune_lr"] = 0.05
    assert from_dict(saved).protocol.finetune_lrs == (0.05,)


def test_cifar10_preset_is_the_common_recipe():
    cfg = get_preset("cifar10")
    assert cfg.model.encoder == "resnet18" and cfg.model.cifar_stem
    assert cfg.data.batch_size == 256 and cfg.optim.name == "lars"
    assert (cfg.optim.base_lr, cfg.optim.trust_coefficient, cfg.optim.clip_lr) == (1.0, 0.02, True)
    assert cfg.method.tau_base == 0.99 and cfg.method.tau_schedule == "cosine"
    assert cfg.augment.blur_p == (0.0, 0.0) and cfg.augment.solarize_p == (0.0, 0.2)


def test_simclr_takes_simclr_s_settings_on_the_gpu_presets_and_an_override_wins():
    for preset in ("imagenet", "cifar10"):
        cfg = preset_config(preset, ["method.name=simclr"])
        assert (cfg.optim.base_lr, cfg.optim.weight_decay) == (0.3, 1e-6)  # [S §2.3]
        assert (cfg.model.proj_hidden_dim, cfg.model.proj_dim) == (2048, 128)
        assert cfg.method.temperature == 0.1
        # the rest stays the preset's: epochs, LARS internals, augmentations
        base = get_preset(preset)
        assert cfg.train.epochs == base.train.epochs and cfg.optim.clip_lr == base.optim.clip_lr
        assert preset_config(preset, []) == base  # BYOL keeps the preset as it is
    won = preset_config("imagenet", ["method.name=simclr", "optim.base_lr=0.5"])
    assert won.optim.base_lr == 0.5 and won.optim.weight_decay == 1e-6
    # cpu-mini keeps its tuned settings for every method
    mini = preset_config("cpu-mini", ["method.name=simclr"])
    assert mini.optim.base_lr == 1.0 and mini.model.proj_dim == 64
    assert set(METHOD_SETTINGS) == {"simclr"}


def test_overrides_parse_yaml_values_and_leave_the_preset_alone():
    base = get_preset("cpu-mini")
    cfg = apply_overrides(base, ["method.tau_base=0.9", "data.batch_size=128",
                                 "method.predictor=false", "augment.blur_p=[0, 0.5]",
                                 "eval.knn_k=[5]", "scaling.use_gpu=false",
                                 "optim.weight_decay=1e-4"])
    assert cfg.method.tau_base == 0.9 and cfg.data.batch_size == 128
    assert cfg.method.predictor is False and cfg.augment.blur_p == (0.0, 0.5)
    assert cfg.eval.knn_k == (5,) and cfg.scaling.use_gpu == "false"
    assert cfg.optim.weight_decay == 1e-4  # YAML 1.1 reads "1e-4" as text
    assert base.method.tau_base == 0.97 and base.method.predictor is True


def test_flatten_gives_dotted_names():
    flat = flatten(Config())
    assert flat["method.tau_base"] == 0.996 and flat["data.dataset"] == "digits"
    assert flat["augment.crop_scale"] == [0.08, 1.0]


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ("method.tau=0.5", "method.tau", "method has:"),
        ("nosuch.key=1", "nosuch.key", "config has:"),
        ("method=1", "method", "is a section"),
        ("data.batch_size=big", "data.batch_size", "expected an integer"),
        ("method.predictor=maybe", "method.predictor", "expected true or false"),
        ("augment.blur_p=[1, 2, 3]", "augment.blur_p", "expected 2 values"),
        ("no-equals-sign", "no-equals-sign", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_field(override, field, hint):
    with pytest.raises(ConfigError) as error:
        apply_overrides(get_preset("cpu-mini"), [override])
    assert error.value.field == field and hint in str(error.value)


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ("method.tau_base=1.5", "method.tau_base", "[0.0, 1.0]"),
        ("method.tau_base=-0.1", "method.tau_base", "[0.0, 1.0]"),
        ("method.name=moco", "method.name", "byol, simclr, random_init"),
        ("method.target_init=shared", "method.target_init", "independent, copy"),
        ("data.dataset=mnist", "data.dataset", "digits, cifar10"),
        ("data.batch_size=255", "data.batch_size", "not divisible by scaling.num_workers=2"),
        ("augment.recipe=no_crop", "augment.recipe", "crop_only"),
        ("augment.crop_scale=[0.5, 0.2]", "augment.crop_scale", "min <= max"),
        ("optim.name=adam", "optim.name", "lars, sgd, adamw"),
        ("scaling.use_gpu=maybe", "scaling.use_gpu", "auto, true, false"),
        ("method.temperature=0", "method.temperature", "> 0"),
        ("eval.knn_k=[0]", "eval.knn_k", "k >= 1"),
        ("train.epochs=-1", "train.epochs", ">= 0"),
        ("protocol.finetune_lrs=[]", "protocol.finetune_lrs", "one or more learning rates > 0"),
        ("protocol.finetune_lrs=[0.1, 0]", "protocol.finetune_lrs", "learning rates > 0"),
        ("protocol.finetune_holdout=0.6", "protocol.finetune_holdout", "[1e-06, 0.5]"),
    ],
)
def test_validation_names_field_and_allowed_values(override, field, hint):
    cfg = apply_overrides(get_preset("cpu-mini"), [override])
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert error.value.field == field and hint in str(error.value)


def test_missing_dataset_root_is_rejected_before_anything_runs(tmp_path):
    cfg = apply_overrides(get_preset("cifar10"), [f"data.root={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="data.root: .* is not a folder"):
        validate(cfg)
    cfg = apply_overrides(get_preset("cifar10"), ["data.root="])
    with pytest.raises(ConfigError, match="data.root: required"):
        validate(cfg)
    validate(apply_overrides(get_preset("cifar10"), [f"data.root={tmp_path}"]))


def test_nan_is_out_of_range():
    cfg = get_preset("cpu-mini")
    cfg.method.tau_base = math.nan
    with pytest.raises(ConfigError, match="method.tau_base"):
        validate(cfg)


def test_clip_lr_needs_lars():
    cfg = apply_overrides(get_preset("cifar10"), ["optim.name=sgd"])
    with pytest.raises(ConfigError) as error:
        validate(cfg, check_paths=False)
    assert error.value.field == "optim.clip_lr" and "'sgd'" in str(error.value)


@pytest.mark.parametrize(
    "override",
    ["method.temperature=nan", "eval.knn_temperature=nan", "optim.base_lr=inf",
     "optim.base_lr=.inf", "augment.crop_ratio=[0.75, .inf]", "augment.blur_sigma=[0.1, 1e400]",
     "data.max_eval_images=1e400"],
)
def test_non_finite_numbers_are_rejected_naming_the_field(override):
    field = override.partition("=")[0]
    with pytest.raises(ConfigError) as error:
        validate(apply_overrides(get_preset("cpu-mini"), [override]))
    assert error.value.field == field


# Any text a user may type after --set: known and unknown keys, YAML scalars, lists, nesting;
# edge values (non-finite, huge, zero, malformed YAML) drawn as often as ordinary ones.
_EDGES = st.sampled_from(["nan", ".nan", ".inf", "-.inf", "1e400", "-1e400", "0", "-1", "0.0",
                          str(10**400), "2001-02-30", "0x10", "~", "[", "{a: 1}", "&a [*a]",
                          "!!python/object:os.system x", "1_000", "[nan, 1]", "[]", "''"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_VALUES = st.one_of(_EDGES, st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3),
                                         max_leaves=6).map(json.dumps))  # JSON is YAML
_KEYS = st.one_of(st.sampled_from(sorted(flatten(Config()))),
                  st.sampled_from(["method", "data.", ".x", "a.b.c", "method.tau_base.x", ""]),
                  st.text(max_size=10))
_OVERRIDES = st.one_of(st.builds("{}={}".format, _KEYS, _VALUES), st.text(max_size=20))


def _numbers(value) -> list[float]:
    return ([x for v in value for x in _numbers(v)] if isinstance(value, list | tuple)
            else [value] if isinstance(value, float) else [])


@settings(max_examples=1000, deadline=None)
@given(overrides=st.lists(_OVERRIDES, min_size=1, max_size=3),
       preset=st.sampled_from(sorted(PRESETS)))
def test_any_override_either_validates_or_raises_config_error(overrides, preset):
    """Property: whatever --set says, the result is a valid config or the project's own error
    (exit 2 with the field named), never another exception (a traceback); and a config that
    validates holds finite numbers only."""
    try:
        cfg = validate(apply_overrides(get_preset(preset), overrides), check_paths=False)
    except ConfigError as error:
        assert error.field is not None and str(error)
        return
    for name, value in flatten(cfg).items():
        assert all(math.isfinite(x) for x in _numbers(value)), (name, value)


def test_show_config_explain_gives_each_field_its_value_meaning_limits_and_paper_section(capsys):
    from byol_ray.cli.main import main

    assert main(["show-config", "--preset", "cpu-mini", "--set", "data.batch_size=128",
                 "--explain"]) == 0
    out = capsys.readouterr().out
    tau = out.split("\nmethod.tau_base = ")[1].splitlines()[:4]
    assert tau[0] == "0.97" and "target EMA decay" in tau[1] and "[P §3" in tau[1]
    assert tau[2:] == ["    allowed: [0.0, 1.0]", "    paper: §3, Table 5a"]
    assert "\ndata.batch_size = 128\n" in out  # the value with --set applied
    assert "\nmethod.name = \"byol\"\n" in out and "    allowed: byol, simclr, random_init" in out
    assert "\nmethod.predictor = true\n" in out and "    allowed: true, false" in out
    assert all(f"\n{name} = " in out for name in flatten(Config()) if "." in name)
    assert all(info.description for _, _, info in leaves(Config()))


@pytest.mark.parametrize("command", [["train"], ["sweep", "ema_decay"]])
def test_every_set_help_explains_the_keys_set_most(command, capsys):
    """`--help` of a command taking --set shows the common keys with the schema's own
    descriptions (cut where long) and what each allows."""
    from byol_ray.cli.main import main
    from byol_ray.core.explain import COMMON_KEYS

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "every key: byol-ray show-config --preset P --explain" in out
    assert all(f"\n  {key}: " in out for key in COMMON_KEYS)
    assert "  method.tau_base: target EMA decay at step 0 [P §3, Table 5a]\n" in out
    assert "      allowed: batch, group_ws, none, affine_init\n" in out
    assert all(len(line) < 140 for line in out.splitlines() if line.startswith("  method."))
