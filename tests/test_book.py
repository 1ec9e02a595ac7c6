"""`regbench.book`: the course book's chapter 8 cells, pasted as written after one import line, print the
book's lines and leave ordinary run directories."""

from __future__ import annotations

import re
from pathlib import Path

import datafiles as df
import pytest

import regbench
from regbench import book

FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

# The chapter 8 lab (the course notebook's cells In [2] to In [10], as the students wrote them).
CH8_CELLS = [
    """
fd = FlowersDataset([96, 96], [96, 96, 3])
od = Office31Dataset([96, 96], [96, 96, 3])
""",
    """
fm1 = CnnRegModel('flowers_model_1', fd, [30,10])
fm1.exec_all(epoch_count=10, report=2, show_params=True)
""",
    """
fm2 = CnnRegModel('flowers_model_2', fd, [30,10], l2_decay=0.1)
fm2.exec_all(epoch_count=10, show_cnt=0, show_params=True)
""",
    """
fm3 = CnnRegModel('flowers_model_3', fd, [30,10], l1_decay=0.01)
fm3.exec_all(epoch_count=10, show_cnt=0, show_params=True)
""",
    """
cnn1 = [['conv',{'ksize':3, 'chn':6}],
        ['max',{'stride':2}],
        ['conv',{'ksize':3, 'chn':12}],
        ['max',{'stride':2}],
        ['conv',{'ksize':3, 'chn':24}],
        ['avg',{'stride':3}]]
fcnn1 = CnnRegModel('flowers_cnn_1', fd, cnn1)
fcnn1.exec_all(epoch_count=10, report=2)
""",
    """
cnn2 = [['conv',{'ksize':3, 'chn':6}],
        ['max',{'stride':2}],
        ['dropout', {'keep_prob':0.6}],
        ['conv',{'ksize':3, 'chn':12}],
        ['max',{'stride':2}],
        ['dropout', {'keep_prob':0.6}],
        ['conv',{'ksize':3, 'chn':24}],
        ['avg',{'stride':3}],
        ['dropout', {'keep_prob':0.6}]]
fcnn2 = CnnRegModel('flowers_cnn_2', fd, cnn2)
fcnn2.exec_all(epoch_count=10, report=2, show_cnt=0)
""",
    """
noise_std = 0.01
cnn3 = [['noise', {'type':'normal','mean':0,'std':noise_std}],
        ['conv',{'ksize':3, 'chn':6}],
        ['max',{'stride':2}],
        ['noise', {'type':'normal','mean':0,'std':noise_std}],
        ['conv',{'ksize':3, 'chn':12}],
        ['max',{'stride':2}],
        ['noise', {'type':'normal','mean':0,'std':noise_std}],
        ['conv',{'ksize':3, 'chn':24}],
        ['avg',{'stride':3}]]
fcnn3 = CnnRegModel('flowers_cnn_3', fd, cnn3)
fcnn3.exec_all(epoch_count=10, report=2, show_cnt=0)
""",
    """
cnn4 = [['batch_normal'],
        ['conv',{'ksize':3, 'chn':6}],
        ['max',{'stride':2}],
        ['batch_normal'],
        ['conv',{'ksize':3, 'chn':12}],
        ['max',{'stride':2}],
        ['batch_normal'],
        ['conv',{'ksize':3, 'chn':24}],
        ['avg',{'stride':3}]]
fcnn4 = CnnRegModel('flowers_cnn_4', fd, cnn4)
fcnn4.exec_all(epoch_count=10, report=2, show_cnt=0)
""",
    """
ocnn1 = CnnRegModel('office31_cnn_1', od, cnn1)
ocnn2 = CnnRegModel('office31_cnn_2', od, cnn2)
ocnn3 = CnnRegModel('office31_cnn_3', od, cnn3)
ocnn4 = CnnRegModel('office31_cnn_4', od, cnn4)
""",
    """
ocnn1.exec_all(epoch_count=10, show_cnt=0)
ocnn2.exec_all(epoch_count=10, show_cnt=0)
ocnn3.exec_all(epoch_count=10, show_cnt=0)
ocnn4.exec_all(epoch_count=10, show_cnt=0)
""",
]
MODELS = [f"flowers_model_{i}" for i in (1, 2, 3)] + [f"flowers_cnn_{i}" for i in (1, 2, 3, 4)]
MODELS += [f"office31_cnn_{i}" for i in (1, 2, 3, 4)]

EPOCH = r"    Epoch {}: cost=\d+\.\d{{3}}, accuracy=\d\.\d{{3}}/\d\.\d{{3}} \(\d+/\d+ secs\)"
TEST = r"Model {} test report: accuracy = \d\.\d{{3}}, \(\d+ secs\)"
SAMPLE = r"추정확률분포 \[[ \d,]+\] => 추정 \w+ : 정답 \w+ => [OX]"
NEAR0 = r"Near 0 parameters = [ \d]{2,3}\.\d%\(\d+/829790\)"  # the book's 96×96×3 MLP: 829,790 weights


@pytest.fixture(autouse=True)
def book_settings():
    """Every test starts from the book's defaults (Korean, runs/) and leaves them so."""
    yield
    book.SETTINGS.lang, book.SETTINGS.out = "ko", "runs"


@pytest.fixture
def photos(tmp_path, monkeypatch) -> Path:
    """A working directory whose data/ holds tiny JPEG trees where regbench looks for flowers and Office-31
    (20 and 18 photos: a train split of 10, one step per epoch, so the lab's 96×96 models take a second)."""
    df.write_image_tree(tmp_path / "data" / "flower_photos", FLOWERS, per_class=4)
    df.write_office31(tmp_path / "data", per=2)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cells(cells: list[str]) -> dict:
    namespace: dict = {}
    exec("from regbench.book import *", namespace)  # the one line added to the book's cells
    for cell in cells:
        exec(cell, namespace)
    return namespace


def test_the_books_chapter_8_cells_print_the_books_lines_and_leave_run_directories(photos, capsys):
    ns = run_cells(CH8_CELLS)
    text = capsys.readouterr().out
    out = text.splitlines()

    # fm1: exec_all(report=2, show_params=True): the book's whole sequence, once
    fm1 = out[:14]
    assert fm1[0] == "Model flowers_model_1 train started:"
    for i, epoch in enumerate((2, 4, 6, 8, 10)):
        assert re.fullmatch(EPOCH.format(epoch), fm1[1 + i]), fm1[1 + i]
    assert re.fullmatch(r"Model flowers_model_1 train ended in \d+ secs:", fm1[6])
    assert re.fullmatch(TEST.format("flowers_model_1"), fm1[7]) and fm1[8] == ""
    assert fm1[9] == "Model flowers_model_1 Visualization"
    assert all(re.fullmatch(SAMPLE, line) for line in fm1[10:13]), fm1[10:13]
    assert re.fullmatch(NEAR0, fm1[13])
    # fm2, fm3: report=0 and show_cnt=0: ended, test report, blank, near 0
    for name, line in (("flowers_model_2", 14), ("flowers_model_3", 18)):
        assert re.fullmatch(rf"Model {name} train ended in \d+ secs:", out[line])
        assert re.fullmatch(TEST.format(name), out[line + 1]) and out[line + 2] == ""
        assert re.fullmatch(NEAR0, out[line + 3])
    # the CNNs: started, epochs, ended, test report; fcnn1 also shows its samples
    for name in ("flowers_cnn_1", "flowers_cnn_2", "flowers_cnn_3", "flowers_cnn_4"):
        block = rf"Model {name} train started:\n" + "\n".join(EPOCH.format(e) for e in (2, 4, 6, 8, 10))
        block += rf"\nModel {name} train ended in \d+ secs:\n" + TEST.format(name) + r"\n\n"
        assert re.search(block, text), name
    assert re.search(r"Model flowers_cnn_1 Visualization\n" + "\n".join([SAMPLE] * 3), text)
    assert text.count("Visualization") == 2  # fm1 and fcnn1 only (show_cnt=0 elsewhere)
    # Office-31: two heads, the book's `0.874+0.558`
    for name in ("office31_cnn_1", "office31_cnn_2", "office31_cnn_3", "office31_cnn_4"):
        pattern = rf"Model {name} train ended in \d+ secs:\nModel {name} test report: accuracy = \d\.\d{{3}}\+\d\.\d{{3}}, \(\d+ secs\)\n\n"
        assert re.search(pattern, text), name

    # one ordinary run directory per model, named after it, that compare and report read
    dirs = sorted((photos / "runs").iterdir())
    assert [re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", d.name) for d in dirs] == sorted(MODELS)
    for d in dirs:
        run = regbench.load_run(d)
        assert run.status == "completed" and run.config["train"]["epochs"] == 10
    assert {d.name.rsplit("-", 2)[0] for d in dirs if (d / "params_hist.png").is_file()} == {
        "flowers_model_1",
        "flowers_model_2",
        "flowers_model_3",
    }
    fm2 = ns["fm2"].run
    assert fm2.config["regularizer"]["l2_decay"] == 0.1 and fm2.config["optimizer"]["name"] == "adam"
    assert fm2.config["data"]["name"] == "flowers" and fm2.summary["input_shape"] == [3, 96, 96]
    assert ns["ocnn1"].run.summary["heads"][1]["name"] == "object"
    log = (ns["fm1"].run.path / "log.txt").read_text(encoding="utf-8").splitlines()
    assert log == fm1  # everything printed for the model, test/visualize/show_param_dist included
    table = regbench.compare(photos / "runs")
    assert len(table.rows) == 11 and {r.runs[0].summary["status"] for r in table.rows} == {"completed"}


def test_exec_all_prints_what_one_trainer_call_prints(photos, capsys):
    fd = book.FlowersDataset([24, 24], [24, 24, 3])
    m = book.CnnRegModel("same", fd, [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8])
    m.exec_all(epoch_count=3, report=1, show_cnt=3)
    split = capsys.readouterr().out
    cfg = regbench.load_config(m.run.config, overrides={"train.show": 3})
    regbench.train(cfg, photos / "other")
    whole = capsys.readouterr().out

    def untimed(text: str) -> str:
        return re.sub(r"\(\d+/\d+ secs\)|in \d+ secs|\(\d+ secs\)", "T", text)

    assert untimed(split) == untimed(whole)
    assert split.count("Visualization") == 1


def test_train_and_test_run_separately(photos, capsys):
    fd = book.FlowersDataset([24, 24], [24, 24, 3])
    m = book.CnnRegModel("apart", fd, [16])
    with pytest.raises(regbench.RegbenchError, match=r"^model 'apart' is not trained yet: call train"):
        m.test()
    m.train(epoch_count=2, report=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Model apart train started:" and out[-1].startswith("Model apart train ended in")
    assert m.run.status == "completed" and "test_acc" in m.run.summary  # the run is complete after train
    m.test()
    m.test()
    m.visualize(2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[2] and re.fullmatch(TEST.format("apart"), out[0]) and out[1] == ""
    assert out[4] == "Model apart Visualization" and len(out) == 7
    m.show_param_dist()
    assert re.fullmatch(r"Near 0 parameters = [ \d]{2,3}\.\d%\(\d+/\d+\)", capsys.readouterr().out.strip())
    assert (m.run.path / "params_hist.png").is_file()


def test_english_on_request_and_where_runs_go(photos, capsys):
    book.set_lang("en")
    book.set_out(photos / "elsewhere")
    fd = book.FlowersDataset([24, 24], [24, 24, 3])
    book.CnnRegModel("english", fd, [16]).exec_all(epoch_count=1, show_cnt=1)
    out = capsys.readouterr().out
    assert "estimated distribution [" in out and "=> estimate " in out and "추정" not in out
    assert len(list((photos / "elsewhere").iterdir())) == 1
    with pytest.raises(regbench.ConfigError, match="lang: expected ko or en, got 'fr'"):
        book.set_lang("fr")


def test_any_regbench_data_set_the_books_way(tmp_path, capsys):
    book.set_out(tmp_path)
    digits = book.RegbenchDataset("digits", [8, 8, 1])
    assert str(digits) == "digits(select, 1430+278+89)" and digits.target_names == list("0123456789")
    assert digits.input_shape == [8, 8, 1] and digits.train_count == 1430 and digits.mode == "select"
    m = book.CnnRegModel("digits_l1", digits, [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}]], l1_decay=0.01)
    m.exec_all(epoch_count=1, show_cnt=0, show_params=True)
    assert "Near 0 parameters" in capsys.readouterr().out
    assert m.run.config["regularizer"]["l1_decay"] == 0.01 and m.run.config["data"]["name"] == "digits"
    flat = book.RegbenchDataset({"name": "digits"}, [-1])
    assert flat.input_shape == [64] and flat.flat
    mlp = book.MlpModel("digits_mlp", flat, [30])  # the book's MlpModel: plain SGD
    mlp.train(epoch_count=1)
    assert mlp.run.config["optimizer"]["name"] == "sgd" and str(mlp) == "digits_mlp/digits(select, 1430+278+89)"
    two = book.RegbenchDataset("synthetic", shape=[8, 8, 1], classes=[3, 4], count=200)
    assert two.mode == "dual_select" and len(two.target_names) == 2


def test_errors_are_one_line_in_the_books_words(tmp_path):
    digits = book.RegbenchDataset("digits")
    with pytest.raises(regbench.ConfigError) as e:
        book.CnnRegModel("m", digits, [["max", {"stride": 3}]])
    assert str(e.value).startswith("CnnRegModel('m'): hconfigs[0]: max: stride 3×3 does not divide the input size 8×8")
    with pytest.raises(regbench.ConfigError, match=r"^CnnRegModel\('m'\): epoch_count: must be between 1"):
        book.CnnRegModel("m", digits, [8]).train(epoch_count=0)
    flat = book.RegbenchDataset("digits", [-1])
    with pytest.raises(regbench.ConfigError) as e:
        book.CnnRegModel("m", flat, [["conv", {"ksize": 3, "chn": 4}]])
    assert "hconfigs[0]: conv: needs image input" in str(e.value) and "give [8, 8, 1] for images" in str(e.value)
    with pytest.raises(
        regbench.ConfigError, match=r"^RegbenchDataset: input_shape: expected \[-1\] \(flat vectors\) or \[8, 8, 1\]"
    ):
        book.RegbenchDataset("digits", [9, 9, 1])
    with pytest.raises(regbench.DataError) as e:
        book.FlowersDataset([96, 96], [96, 96, 3], root=tmp_path / "no_photos")
    assert "\n" not in str(e.value) and "data set 'flowers': missing" in str(e.value)
    assert str(e.value).endswith(
        "; FlowersDataset(..., download=True) downloads them; root= takes the book's folder of <class>/*.jpg"
    )
    with pytest.raises(regbench.ConfigError, match="^FlowersDataset: resolution: must be"):
        book.FlowersDataset([0, 96])


def test_root_is_the_books_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = df.write_image_tree(tmp_path / "chap05" / "flowers", ["daisy", "rose", "tulip"], per_class=8)
    fd = book.FlowersDataset([16, 16], [16, 16, 3], root=tree)  # the book's data/chap05/flowers
    assert fd.data["path"] == str(tree) and fd.target_names == ["daisy", "rose", "tulip"]
    assert not (tree / ".regbench-cache").exists() and (tree.parent / ".regbench-cache").is_dir()
    df.write_office31(tmp_path / "chap06")
    od = book.Office31Dataset([16, 16], [16, 16, 1], root=tmp_path / "chap06" / "office31")
    assert od.image_shape == [16, 16, 1] and od.mode == "dual_select"
    assert od.target_names == [["amazon", "dslr", "webcam"], ["bike", "mug", "pen"]]
    df.write_image_tree(tmp_path / "data" / "flower_photos", FLOWERS, per_class=8)
    assert book.FlowersDataset([16, 16], root=tmp_path / "data").data["root"] == str(tmp_path / "data")


def test_figures_are_only_drawn_in_a_notebook(photos, monkeypatch):
    shown = []
    monkeypatch.setattr(book, "in_notebook", lambda: True)
    monkeypatch.setattr(book, "show_png", lambda png: shown.append(png))
    fd = book.FlowersDataset([24, 24], [24, 24, 3])
    m = book.CnnRegModel("maps", fd, [["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 2}]], show_maps=True)
    m.exec_all(epoch_count=1, show_cnt=2, show_params=True)
    # kernels of the conv layer, maps of conv and max, the samples, the histogram
    assert len(shown) == 5 and all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in shown)
