"""microcnn-check / microcnn.dataset_check: duplicates within a class, label conflicts, leaks across splits,
unreadable files, counts and the image summary, every file named."""

import json
import shutil

import numpy as np
from PIL import Image

from microcnn.cli.check import main as check_main
from microcnn.dataset_check import check_dataset, problem_count


def _image(seed, size=6):
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_clean(root):
    seed = 0
    for split, count in (("train", 3), ("validation", 2)):
        for name in ("cells", "debris"):
            for i in range(count):
                seed += 1
                _save(root / split / name / f"{name}{i}.png", _image(seed))
    return root


def test_clean_dataset_has_no_problems(tmp_path, capsys):
    root = make_clean(tmp_path / "data")
    result = check_dataset(root)
    assert result["counts"] == {"train": {"cells": 3, "debris": 3}, "validation": {"cells": 2, "debris": 2}}
    assert problem_count(result) == 0
    assert result["summary"]["sizes"] == {"6x6": 10} and result["summary"]["modes"] == {"L": 10}
    assert result["summary"]["bit_depths"] == {"8-bit": 10} and result["summary"]["formats"] == {"PNG": 10}
    assert check_main([str(root)]) == 0
    assert "No problems found." in capsys.readouterr().out


def test_duplicates_conflicts_leaks_unreadable_are_found_and_named(tmp_path, capsys):
    root = make_clean(tmp_path / "data")
    train, val = root / "train", root / "validation"
    # Duplicate within a class: a copy under another name, and the same pixels saved as TIFF.
    shutil.copy(train / "cells" / "cells0.png", train / "cells" / "copy_of_cells0.png")
    _save(train / "cells" / "cells0_again.tif", np.asarray(Image.open(train / "cells" / "cells0.png")))
    # Label conflict: one image in both classes of train.
    shutil.copy(train / "debris" / "debris1.png", train / "cells" / "mislabelled.png")
    # Leak: a validation image that is also in train (same class).
    shutil.copy(val / "debris" / "debris0.png", train / "debris" / "leaked.png")
    # test/ split with a leak from train in another class: counts as leak and conflict.
    _save(root / "test" / "cells" / "t0.png", _image(1000))
    (root / "test" / "debris").mkdir()
    shutil.copy(train / "cells" / "cells2.png", root / "test" / "debris" / "t_leak.png")
    (train / "cells" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (train / "cells" / "notes.txt").write_text("x")
    (train / "cells" / ".DS_Store").write_bytes(b"junk")

    result = check_dataset(root)

    def rel(group):
        return [str(p).replace(str(root) + "/", "") for p in group]

    assert result["splits"] == ["train", "validation", "test"]
    assert result["counts"]["train"] == {"cells": 6, "debris": 4}
    assert result["counts"]["test"] == {"cells": 1, "debris": 1}
    assert [rel(g) for g in result["duplicates"]] == [
        ["train/cells/cells0.png", "train/cells/cells0_again.tif", "train/cells/copy_of_cells0.png"]]
    assert sorted(rel(g) for g in result["conflicts"]) == [
        ["test/debris/t_leak.png", "train/cells/cells2.png"],
        ["train/cells/mislabelled.png", "train/debris/debris1.png"]]
    assert sorted(rel(g) for g in result["leaks"]) == [
        ["test/debris/t_leak.png", "train/cells/cells2.png"],
        ["train/debris/leaked.png", "validation/debris/debris0.png"]]
    assert [rel([u["path"]]) for u in result["unreadable"]] == [["train/cells/broken.png"]]
    assert "could not decode" in result["unreadable"][0]["reason"] or "not a readable" in \
        result["unreadable"][0]["reason"]
    assert rel(result["non_images"]) == ["train/cells/notes.txt"]
    assert problem_count(result) == 1 + 1 + 2 + 2

    assert check_main([str(root), "--format", "json"]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    for key in ("counts", "unreadable", "duplicates", "conflicts", "leaks"):
        assert data[key] == result[key], key
    assert "6 problem(s) found" in captured.err
    assert check_main([str(root)]) == 1
    text = capsys.readouterr().out
    for name in ("copy_of_cells0.png", "cells0_again.tif", "mislabelled.png", "leaked.png", "t_leak.png",
                 "broken.png"):
        assert name in text, name
    assert "Leaks across splits (2 group(s)" in text


def test_flat_layout_and_bad_folder(tmp_path, capsys):
    root = tmp_path / "flat"
    _save(root / "a" / "x.png", _image(1))
    _save(root / "b" / "y.png", _image(1))
    result = check_dataset(root)
    assert result["splits"] == ["all"] and len(result["conflicts"]) == 1 and not result["leaks"]
    assert check_main([str(tmp_path / "missing")]) == 1
    assert "missing: not a directory" in capsys.readouterr().err


def test_files_only_the_training_decoder_reads_count_as_readable(tmp_path, monkeypatch):
    """A format Pillow cannot open but microcnn's decoder can (here: Pillow made to refuse TIFF) is readable,
    and its copies are found by their bytes."""
    from microcnn import dataset_check, images

    root = make_clean(tmp_path / "data")
    _save(root / "train" / "cells" / "scan.tif", _image(99))
    shutil.copy(root / "train" / "cells" / "scan.tif", root / "validation" / "cells" / "scan_copy.tif")
    pillow = dataset_check._inspect_with_pillow

    def refuse_tiff(path):
        if str(path).endswith(".tif"):
            raise images.ImageDecodeError("not a readable image (unrecognised or empty file)")
        return pillow(path)

    monkeypatch.setattr(dataset_check, "_inspect_with_pillow", refuse_tiff)
    result = check_dataset(root)
    assert not result["unreadable"] and result["counts"]["train"]["cells"] == 4
    assert [[p.rsplit("/", 1)[1] for p in g] for g in result["leaks"]] == [["scan.tif", "scan_copy.tif"]]
    assert result["summary"]["sizes"]["?"] == 2
