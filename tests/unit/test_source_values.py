"""Values the readers must read exactly or refuse by file, line and field: Python's literal syntax,
integers beyond 2**53, nulls in Parquet integer columns, header names that collide, empty RDF."""

from __future__ import annotations

import pytest

from kg_builders.errors import ConfigError, DataError
from kg_builders.sources import load_generic, load_movielens, load_rdf
from kg_builders.sources._reader import read_delimited
from kg_builders.sources.catalog import load_catalog

BIG = [1700000000000000001, 9007199254740993]  # above 2**53: a float would round them


@pytest.mark.parametrize(
    ("rating", "timestamp", "message"),
    [
        ("4_5", "1", "field 'rating': '4_5' is not a finite number"),  # Python would read 45
        ("4", "1_700_000_000", "field 'timestamp': '1_700_000_000' is not a finite integer"),
        ("4", "1.7e9", "field 'timestamp': '1.7e9' is not a finite integer"),
        ("\uff19", "1", "field 'rating'"),  # a full-width 9
    ],
)
def test_generic_csv_numbers_are_plain_ascii_literals(tmp_path, rating, timestamp, message) -> None:
    (tmp_path / "i.csv").write_text(f"user_id,item_id,rating,timestamp\nalice,m1,{rating},{timestamp}\n")
    with pytest.raises(DataError, match=f"i.csv, line 2, {message}"):
        load_generic(tmp_path, interactions="i.csv")
    (tmp_path / "ok.csv").write_text("user_id,item_id,rating,timestamp\nalice,m1,-4.5e0,+17\nbob,m1,.5,0\n")
    frame = load_generic(tmp_path, interactions="ok.csv").interactions
    assert frame["rating"].tolist() == [-4.5, 0.5] and frame["timestamp"].tolist() == [17, 0]


def test_a_parquet_integer_column_with_a_null_keeps_its_ids_and_exact_values(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "user_id": pa.array([1, None, 3, 4], type=pa.int64()),
            "item_id": ["x", "x", "x", "y"],
            "timestamp": pa.array([BIG[0], 5, BIG[1], None], type=pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "i.parquet")
    got = load_generic(tmp_path, interactions="i.parquet", on_error="skip")
    assert got.interactions["user_id"].tolist() == ["1", "3"]  # ids as the integers' text, not "1.0"
    assert got.interactions["timestamp"].tolist() == BIG
    assert [(i.line, i.field) for i in got.issues] == [(2, "user_id"), (4, "timestamp")]


def test_skipping_a_bad_integer_leaves_the_others_exact(tmp_path) -> None:
    (tmp_path / "ts.csv").write_text(f"user_id,item_id,timestamp\nu,a,{BIG[0]}\nu,b,abc\nu,c,{BIG[1]}\n")
    frame, issues = read_delimited(
        tmp_path / "ts.csv",
        sep=",",
        columns=["user_id", "item_id", "timestamp"],
        types={"timestamp": "int"},
        on_error="skip",
    )
    assert frame["timestamp"].tolist() == BIG and frame["timestamp"].dtype == "int64"
    assert [(i.line, i.reason) for i in issues] == [(3, "'abc' is not a finite integer")]


def test_a_header_column_named_like_a_renamed_one_is_an_error_naming_both(tmp_path) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp,item_id\n1,1,4,1,9\n")
    with pytest.raises(
        DataError, match=r"ratings.csv, line 1: columns \['movieId', 'item_id'\] would both be 'item_id'"
    ):
        load_movielens(tmp_path)


def test_an_empty_or_non_utf8_text_rdf_file_is_an_error_with_its_line(tmp_path) -> None:
    (tmp_path / "empty.ttl").write_text("")
    (tmp_path / "blank.nt").write_text(" \n\n")
    for name in ("empty.ttl", "blank.nt"):
        with pytest.raises(DataError, match=f"{name}: file is empty"):
            load_rdf(tmp_path / name)
    (tmp_path / "lat.ttl").write_bytes('@prefix ex: <http://e/> .\nex:a ex:b "caf\xe9" .\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"lat.ttl, line 2: bytes b'\\xe9' are not valid utf-8"):
        load_rdf(tmp_path / "lat.ttl")


def test_a_catalog_that_is_not_utf8_is_a_config_error_naming_the_line(tmp_path) -> None:
    (tmp_path / "c.json").write_bytes('{"format_version": 1,\n "datasets": [{"name": "caf\xe9"}]}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c.json: not UTF-8 at line 2"):
        load_catalog(tmp_path / "c.json")
