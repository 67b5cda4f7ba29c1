"""`runtime.progress`: a line per block of steps, and after the last, each with an eta; its
detail computed only for the lines it prints."""

from byol_ray.runtime.progress import Progress, clock


def test_a_line_per_block_and_after_the_last_with_an_eta(capsys):
    progress = Progress("linear final fit at lr 0.1: epoch", 25)
    asked = []
    for epoch in range(1, 26):
        progress.step(epoch, lambda epoch=epoch: asked.append(epoch) or f"loss {1 / epoch:.2f}")
    lines = capsys.readouterr().out.splitlines()
    assert asked == [3, 6, 9, 12, 15, 18, 21, 24, 25]
    assert len(lines) == 9 and lines[0].startswith(
        "[byol-ray] linear final fit at lr 0.1: epoch 3/25 | loss 0.33 | eta ")
    assert lines[-1].startswith("[byol-ray] linear final fit at lr 0.1: epoch 25/25 | loss 0.04")
    assert lines[-1].endswith("| eta 0:00:00")


def test_short_work_says_every_step_and_a_clock_reads_hours():
    progress = Progress("fit", 3)
    assert progress.every == 1
    assert clock(3725.9) == "1:02:05" and clock(0) == "0:00:00"
