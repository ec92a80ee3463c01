"""Batch inference to Parquet: equal to recommend_batch, chunk-independent, resumable, guarded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import graph_rec.inference as inference
from graph_rec.cli import main
from graph_rec.errors import ConfigError, DataError, UnknownIdError
from graph_rec.inference import model_fingerprint, read_scores, score_all
from graph_rec.recommender import Recommender
from tests.worlds import synthetic_graph

TRAIN = {"epochs": 3, "batch_size": 256, "lr": 0.02, "eval_every": 3, "patience": 5, "loss": "softmax"}


@pytest.fixture(scope="module")
def world():
    return synthetic_graph()


@pytest.fixture(scope="module")
def rec(world):
    kg, sp = world
    settings = {"embedding_dim": 8, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
    return Recommender.fit(kg, split=sp, settings=settings, train=TRAIN)


@pytest.fixture(scope="module")
def ease(world):
    kg, sp = world
    return Recommender.fit(kg, model="ease", settings={"l2": 50.0}, split=sp, train=TRAIN)


def _expected(rec, k, exclude_seen, users=None):
    batch = rec.recommend_batch(list(users or rec.user_ids), k=k, exclude_seen=exclude_seen, batch_size=16)
    return {r.user_id: (list(r.item_ids), list(r.scores)) for r in batch}


def _as_lists(df):
    out = {}
    for user, g in df.groupby("user", sort=False):
        assert g["rank"].tolist() == list(range(1, len(g) + 1)), f"ranks of {user} are not 1..n in order"
        out[user] = (g["item"].tolist(), g["score"].tolist())
    return out


def _seen_count(rec, user_id):
    u = rec.user_ids.index(user_id)
    return int(rec.data.train.indptr[u + 1] - rec.data.train.indptr[u])


# ------------------------------------------------------------------ the output is recommend_batch's
@pytest.mark.parametrize("model", ["rec", "ease"])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_parquet_equals_recommend_batch_for_every_user(request, tmp_path, model, exclude_seen):
    r = request.getfixturevalue(model)
    num_items = len(r.item_ids)
    for k in (5, num_items - 3):  # the second is larger than the catalogue minus the seen items
        out = tmp_path / f"k{k}"
        res = score_all(r, out, k=k, chunk_users=16, exclude_seen=exclude_seen)
        df = read_scores(out)
        assert list(df.columns) == ["user", "rank", "item", "score"]
        schema = pq.read_schema(out / "part-00000.parquet")
        assert [str(t) for t in schema.types] == ["string", "int32", "string", "float"]
        got, want = _as_lists(df), _expected(r, k, exclude_seen)
        assert list(got) == list(r.user_ids) and res.users == len(r.user_ids) and res.rows == len(df)
        for user, (items, scores) in want.items():
            assert got[user][0] == items
            np.testing.assert_allclose(got[user][1], scores, rtol=1e-6, atol=1e-6)
            if k > 5:
                short = num_items - _seen_count(r, user) if exclude_seen else k
                assert len(items) == min(k, short)
        if exclude_seen and k > 5:
            assert len(df) < k * len(r.user_ids)  # some users had fewer than k unseen items


def test_chunking_does_not_change_the_result(rec, tmp_path):
    small = score_all(rec, tmp_path / "c7", k=10, chunk_users=7)
    big = score_all(rec, tmp_path / "c1000", k=10, chunk_users=1000)
    n = len(rec.user_ids)
    assert small.parts == -(-n // 7) and big.parts == 1
    assert len(list((tmp_path / "c7").glob("part-*.parquet"))) == small.parts
    a, b = read_scores(tmp_path / "c7"), read_scores(tmp_path / "c1000")
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"))
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6, atol=1e-6)
    manifest = json.loads((tmp_path / "c7" / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["k"] == 10 and manifest["chunk_users"] == 7
    assert sum(p["users"] for p in manifest["parts"]) == n and sum(p["rows"] for p in manifest["parts"]) == len(a)


def test_a_subset_of_users_in_the_order_given(rec, tmp_path):
    users = list(reversed(rec.user_ids[5:17]))
    res = score_all(rec, tmp_path / "o", k=4, users=users, chunk_users=5)
    df = read_scores(tmp_path / "o")
    assert res.users == 12 and res.parts == 3
    assert list(dict.fromkeys(df["user"])) == users
    assert _as_lists(df).keys() == _expected(rec, 4, True, users).keys()


# ------------------------------------------------------------------ resume
def test_resume_after_a_crash_keeps_the_finished_parts(rec, tmp_path, monkeypatch):
    full = tmp_path / "full"
    score_all(rec, full, k=6, chunk_users=7)
    out = tmp_path / "out"
    real = inference._write_part
    calls = []

    def crash_on_third(table, path, compression):
        calls.append(path.name)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(table, path, compression)

    monkeypatch.setattr(inference, "_write_part", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_all(rec, out, k=6, chunk_users=7)
    monkeypatch.setattr(inference, "_write_part", real)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert not manifest["complete"] and [p["file"] for p in manifest["parts"]] == calls[:2]
    with pytest.raises(DataError, match="unfinished"):
        read_scores(out)
    before = {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in calls[:2]}
    (out / ".part-00002.parquet.tmp-leftover").write_bytes(b"half a file")  # a crash mid-write
    (out / "part-00003.parquet").write_bytes(b"not in the manifest")  # e.g. renamed, manifest not yet updated

    res = score_all(rec, out, k=6, chunk_users=7)
    assert res.resumed == 2 and res.parts == -(-len(rec.user_ids) // 7)
    assert {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in calls[:2]} == before
    assert not list(out.glob(".*tmp*"))
    pd.testing.assert_frame_equal(read_scores(out), read_scores(full))
    again = score_all(rec, out, k=6, chunk_users=7)  # a finished output: nothing to do
    assert again.resumed == again.parts and again.rows == res.rows


def test_a_damaged_part_is_detected(rec, tmp_path):
    out = tmp_path / "out"
    score_all(rec, out, k=6, chunk_users=20)
    part = out / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"part-00001\.parquet \(checksum mismatch\)"):
        score_all(rec, out, k=6, chunk_users=20)
    with pytest.raises(DataError, match="checksum mismatch"):
        read_scores(out)
    (out / "part-00002.parquet").unlink()
    with pytest.raises(DataError, match=r"part-00002\.parquet \(missing\)"):
        score_all(rec, out, k=6, chunk_users=20)
    fixed = score_all(rec, out, k=6, chunk_users=20, overwrite=True)
    assert fixed.resumed == 0 and len(read_scores(out)) == fixed.rows


# ------------------------------------------------------------------ guards
def test_another_configuration_is_refused_and_overwrite_replaces_it(rec, ease, tmp_path):
    out = tmp_path / "out"
    first = score_all(rec, out, k=5, chunk_users=20)
    with pytest.raises(ConfigError, match="k: 5 in the output, 6 now"):
        score_all(rec, out, k=6, chunk_users=20)
    with pytest.raises(ConfigError, match="model: the output was made by 'graphrec'.*this is 'ease'"):
        score_all(ease, out, k=5, chunk_users=20)
    with pytest.raises(ConfigError, match="exclude_seen: True in the output, False now"):
        score_all(rec, out, k=5, chunk_users=20, exclude_seen=False)
    with pytest.raises(ConfigError, match="chunk_users: 20 in the output, 10 now"):
        score_all(rec, out, k=5, chunk_users=10)
    with pytest.raises(ConfigError, match="users: the output holds 60 users"):
        score_all(rec, out, k=5, chunk_users=20, users=list(rec.user_ids[:10]))
    with pytest.raises(ConfigError, match="compression: 'zstd' in the output, 'gzip' now"):
        score_all(rec, out, k=5, chunk_users=20, compression="gzip")
    with pytest.raises(ConfigError, match="already holds scores"):
        score_all(rec, out, k=5, chunk_users=20, resume=False)
    assert len(read_scores(out)) == first.rows  # the refusals changed nothing
    res = score_all(ease, out, k=6, chunk_users=7, overwrite=True)
    assert res.resumed == 0 and sorted(p.name for p in out.glob("part-*")) == [
        f"part-{i:05d}.parquet" for i in range(res.parts)
    ]
    got, want = _as_lists(read_scores(out)), _expected(ease, 6, True)
    assert {u: v[0] for u, v in got.items()} == {u: v[0] for u, v in want.items()}


def test_the_fingerprint_survives_save_and_load_and_tells_models_apart(rec, ease, tmp_path):
    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert model_fingerprint(loaded) == model_fingerprint(rec) != model_fingerprint(ease)
    score_all(rec, tmp_path / "out", k=3, chunk_users=50)
    assert score_all(loaded, tmp_path / "out", k=3, chunk_users=50).resumed == 2  # accepted as the same model


def test_items_added_while_scoring_are_left_out_of_the_output(rec, tmp_path, monkeypatch):
    """score_all ranks every chunk on the catalogue of the moment it started, as its manifest says."""
    rec.save(tmp_path / "m")
    served = Recommender.load(tmp_path / "m")  # a copy to add items to
    k = len(served.item_ids)  # every unseen item in every list: an added one would be in them
    want, fingerprint = _expected(served, k, True), model_fingerprint(served)
    write_part = inference._write_part

    def add_after_a_part(table, path, compression):  # another thread's add_item between two chunks
        sha = write_part(table, path, compression)
        if "hot" not in served.item_ids:
            served.add_item("hot", tags=list(served.graph.node_ids["tag"][:3]))
        return sha

    monkeypatch.setattr(inference, "_write_part", add_after_a_part)
    res = score_all(served, tmp_path / "out", k=k, chunk_users=10)
    assert res.parts > 1 and served.item_ids[-1] == "hot"
    got = _as_lists(read_scores(tmp_path / "out"))
    assert {u: v[0] for u, v in got.items()} == {u: v[0] for u, v in want.items()}
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == fingerprint != model_fingerprint(served)
    assert manifest["num_items"] == k


def test_the_fingerprint_covers_what_the_model_rebuilds_from_the_graph(world, rec):
    """The same weights over a view without one relation rank differently: another fingerprint."""
    from graph_rec.data import DataConfig, RecData
    from graph_rec.training.trainer import init_model

    kg, sp = world
    data = RecData(kg, sp, config=DataConfig(drop_relations=("has_genre",)))
    model = init_model("graphrec", rec.model_settings, data, seed=0)
    model.load_state_dict(rec.model.state_dict())
    other = Recommender(model, data, kg, model_name="graphrec", model_settings=rec.model_settings)
    assert any(other.recommend(u, k=10) != rec.recommend(u, k=10) for u in rec.user_ids)
    assert model_fingerprint(other) != model_fingerprint(rec)


def test_unknown_users_and_bad_arguments_write_nothing(rec, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnknownIdError, match="unknown user id\\(s\\): 'ghost', 'nobody'"):
        score_all(rec, out, users=[rec.user_ids[0], "ghost", "nobody"], k=3)
    assert not out.exists()
    for kwargs, match in (
        ({"k": 0}, "k must be"),
        ({"k": len(rec.item_ids) + 1}, "larger than the catalogue"),
        ({"chunk_users": 0}, "chunk_users"),
        ({"users": rec.user_ids[0]}, "not one string"),
        ({"users": []}, "users is empty"),
        ({"users": [rec.user_ids[0]] * 2}, "more than once"),
        ({"compression": "rar"}, "compression"),
    ):
        with pytest.raises(ConfigError, match=match):
            score_all(rec, out, **{"k": 3, **kwargs})
        assert not out.exists()
    # out_dir, or a folder above it, is a file: a ConfigError naming it, not an OSError
    (tmp_path / "afile").write_text("x")
    for path in (tmp_path / "afile" / "sub", tmp_path / "afile"):
        with pytest.raises(ConfigError, match=f"cannot write to {path}: {tmp_path / 'afile'} is a file"):
            score_all(rec, path, k=3)
    assert (tmp_path / "afile").read_text() == "x"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"someone else's")
    with pytest.raises(ConfigError, match="not a score_all output"):
        score_all(rec, out, k=3)
    with pytest.raises(DataError, match="no _manifest.json"):
        read_scores(out)


# ------------------------------------------------------------------ command line
def test_cli_score_all_end_to_end(rec, tmp_path, capsys):
    model = tmp_path / "model"
    rec.save(model)
    users = list(rec.user_ids[:10])
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n\n")
    out = tmp_path / "scores"
    args = ["score-all", str(model), "--out", str(out), "--k", "4", "--chunk-users", "3"]
    args += ["--users", str(tmp_path / "users.txt"), "--quiet", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 10 and summary["parts"] == 4 and summary["resumed"] == 0 and summary["k"] == 4
    df = read_scores(out)
    assert summary["rows"] == len(df) == 40
    want = _expected(Recommender.load(model), 4, True, users)
    assert {u: v[0] for u, v in _as_lists(df).items()} == {u: v[0] for u, v in want.items()}

    assert main(args) == 0  # resumed: every part already there
    assert json.loads(capsys.readouterr().out)["resumed"] == 4
    changed = [a if a != "4" else "5" for a in args]
    assert main(changed) == 2
    captured = capsys.readouterr()
    assert "k: 4 in the output, 5 now" in captured.err and json.loads(captured.out)["error"] == "ConfigError"
    assert main([*changed, "--overwrite", "--include-seen"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 50 and summary["exclude_seen"] is False
    assert main([*changed, "--include-seen", "--no-resume"]) == 2
    assert "already holds scores" in capsys.readouterr().err
    # an id the model does not know is named by its line in the file
    (tmp_path / "users.txt").write_text("\n".join([*users[:2], "ghost", "spectre"]) + "\n")
    assert main([*args[:-1], "--overwrite"]) == 2
    assert "users.txt, line 3: unknown user id 'ghost' (2 unknown in all)" in capsys.readouterr().err


def test_the_folder_reads_as_one_parquet_data_set_and_older_outputs_still_work(rec, tmp_path):
    out = tmp_path / "o"
    score_all(rec, out, k=3, chunk_users=7)
    # the manifest's underscore makes Parquet readers skip it
    direct = pd.read_parquet(out).sort_values(["user", "rank"]).reset_index(drop=True)
    ours = read_scores(out).sort_values(["user", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(direct.astype(ours.dtypes.to_dict()), ours)
    # an output written under the older manifest name reads and resumes
    (out / "_manifest.json").rename(out / "manifest.json")
    pd.testing.assert_frame_equal(read_scores(out), read_scores(out))
    again = score_all(rec, out, k=3, chunk_users=7, resume=True)
    assert again.parts == -(-len(rec.user_ids) // 7)
    assert (out / "_manifest.json").is_file() and not (out / "manifest.json").exists()


def test_another_tools_manifest_json_in_the_folder_is_left_alone(rec, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    theirs = json.dumps({"format_version": 3, "owner": "a data catalogue"})
    (out / "manifest.json").write_text(theirs)
    score_all(rec, out, k=3, chunk_users=7)
    assert (out / "manifest.json").read_text() == theirs
    score_all(rec, out, k=3, chunk_users=7, resume=True)
    score_all(rec, out, k=4, chunk_users=7, overwrite=True)
    assert (out / "manifest.json").read_text() == theirs
    assert len(read_scores(out)) == 4 * len(rec.user_ids)
