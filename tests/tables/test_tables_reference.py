"""The paper's reference values ship with the package, each with its source."""

from byol_ray.tables.reference import reference_frame, references


def test_every_value_of_the_brief_is_there_with_its_source():
    ref = reference_frame()
    theirs = ref["table"].eq("normalization")  # Richemond et al. 2020, not the BYOL paper
    assert (ref.loc[~theirs, "source"].str.startswith("arXiv 2006.07733, ")).all()
    assert (ref.loc[theirs, "source"].str.startswith("arXiv 2010.10241, ")).all()
    assert ref.groupby("table").size().to_dict() == {
        "table_5a": 5, "table_5b": 8, "fig_3a": 14, "fig_3b": 18, "baseline": 2,
        "table_4a": 8, "table_1": 2, "table_2": 2, "normalization": 2}
    assert {r.row: r.top1 for r in references("normalization")} == {"bn": 74.3, "gn_ws": 73.9}
    tau = {r.row: r.top1 for r in references("table_5a")}
    assert tau == {"1": 18.8, "0.999": 69.8, "0.99": 72.5, "0.9": 68.4, "0": 0.3}
    five_b = {r.row: (r.method, r.top1, r.collapsed) for r in references("table_5b")}
    # SimCLR's loss under BYOL's hyper-parameters: a BYOL variant, not `method=simclr`
    assert five_b["pred=no,target=no,beta=1"] == ("byol", 69.4, False)
    assert five_b["pred=no,target=no,beta=0"] == ("byol", 0.1, True)
    batch = {(r.row, r.method): r.top1 for r in references("fig_3a")}
    assert [batch[(b, "byol")] for b in ("4096", "256", "64")] == [72.5, 71.8, 59.7]
    assert [batch[(b, "simclr")] for b in ("4096", "256", "64")] == [67.9, 64.3, 59.2]
    aug = {(r.row, r.method): r.top1 for r in references("fig_3b")}
    assert aug[("crop_only", "byol")] == 59.4 and aug[("remove_colour", "simclr")] == 45.7
    assert {r.row: r.top1 for r in references("baseline")} == {
        "random_init": 1.4, "byol_1000_epochs": 74.3}
    assert "Table 1a" in references("baseline")[1].source
    transfer = {(r.row, r.method): r.top1 for r in references("table_4a")}
    assert transfer[("detect_ap50", "byol")] == 77.5 and transfer[("segment_miou", "byol")] == 76.3
    assert transfer[("detect_ap50", "supervised")] == 74.4
    assert transfer[("segment_miou", "supervised")] == 74.4
    assert {r.row: r.top1 for r in references("table_1")} == {"byol": 74.3, "random_init": 1.4}
    assert {r.row: r.top1 for r in references("table_2")} == {"1pct": 53.2, "10pct": 68.8}
    assert all("Table 2a" in r.source for r in references("table_2"))


def test_fig_3b_rows_use_the_config_recipe_names():
    from byol_ray.core.config import AUGMENT_RECIPES

    assert list(dict.fromkeys(r.row for r in references("fig_3b"))) == list(AUGMENT_RECIPES)
