"""Source readers on tiny hand-written files: every reader and flavour, and the bad-input cases."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kg_builders.errors import ConfigError, DataError
from kg_builders.sources import (
    detect_lightgcn_layout,
    detect_movielens_flavour,
    load_generic,
    load_hetrec_lastfm,
    load_kg_triples,
    load_lightgcn,
    load_movie_wiki,
    load_movielens,
    load_movielens_100k_split,
    load_rdf,
)
from kg_builders.sources._reader import read_delimited, reject_rows
from kg_builders.tables import SCHEMAS, Tables, validate


def no_reader_attrs(t: Tables) -> bool:
    """Returned tables carry no line-number attrs (pandas cannot compare them in concat/merge)."""
    return all(getattr(t, n) is None or getattr(t, n).attrs == {} for n in SCHEMAS)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --- MovieLens latest ---------------------------------------------------------------------------

MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "99,Untitled Project  ,(no genres listed)\n"
    "7,Death Note: Desu nôto (2006–2007),Mystery\n"
)
RATINGS = (
    "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,0.5,964981247\n2,1,5.0,964982224\n2,99,3.5,964983815\n"
)


def latest(tmp_path: Path, *, ratings: str = RATINGS, movies: str = MOVIES, name: str = "ml-latest-small") -> Path:
    d = tmp_path / name
    write(d / "movies.csv", movies)
    write(d / "ratings.csv", ratings)
    write(d / "tags.csv", 'userId,movieId,tag,timestamp\n2,1,pixar,1445714994\n2,11,"politics, romance",1445714996\n')
    write(d / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,9087\n99,0000001,\n7,0877057,13916\n")
    return d


def test_latest_reads_every_table(tmp_path: Path) -> None:
    t = load_movielens(latest(tmp_path))
    assert t.source == "ml-latest-small"
    assert detect_movielens_flavour(tmp_path / "ml-latest-small") == "ml-latest"
    items = t.items.set_index("item_id")
    assert list(items.index) == ["1", "11", "99", "7"]
    assert items.loc["1", "title"] == "Toy Story" and items.loc["1", "year"] == 1995
    assert items.loc["11", "title"] == "American President, The"
    assert items.loc["99", "title"] == "Untitled Project" and pd.isna(items.loc["99", "year"])
    assert items.loc["7", "year"] == 2006
    assert items.loc["1", "genres"] == ("Adventure", "Animation", "Children")
    assert items.loc["99", "genres"] == ()
    assert items.loc["11", "raw_title"] == "American President, The (1995)"
    assert items.loc["1", "imdb_id"] == "0114709" and items.loc["99", "imdb_id"] == "0000001"
    assert pd.isna(items.loc["99", "tmdb_id"]) and items.loc["7", "tmdb_id"] == "13916"
    assert items["text"].isna().all()
    inter = t.interactions
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert inter["rating"].tolist() == [4.0, 0.5, 5.0, 3.5]
    assert inter["timestamp"].dtype == np.int64 and inter["user_id"].tolist() == ["1", "1", "2", "2"]
    tags = t.tag_assignments
    assert tags["tag"].tolist() == ["pixar", "politics, romance"]
    assert tags["item_id"].tolist() == ["1", "11"] and tags["timestamp"].tolist() == [1445714994, 1445714996]
    assert t.users is None and t.issues == ()
    assert no_reader_attrs(t)


def test_latest_source_name_falls_back_to_flavour(tmp_path: Path) -> None:
    assert load_movielens(latest(tmp_path, name="my-movies")).source == "ml-latest"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("3,1,6.0,1", "rating", "0.5..5.0"),
        ("3,1,0.0,1", "rating", "0.5..5.0"),
        ("3,1,NaN,1", "rating", "finite"),
        ("3,1,,1", "rating", "finite"),
        ("3,1,inf,1", "rating", "finite"),
        ("3,1,4.0,later", "timestamp", "integer"),
        ("1,1,3.0,5", "user_id", "duplicate"),
        ("3,555,3.0,5", "item_id", "555"),
    ],
)
def test_latest_bad_rating_rows_raise_with_line_and_field(tmp_path: Path, row: str, field: str, words: str) -> None:
    d = latest(tmp_path, ratings=RATINGS + row + "\n")
    with pytest.raises(DataError) as err:
        load_movielens(d)
    assert err.value.line == 6 and err.value.field == field
    assert err.value.file == str(d / "ratings.csv")
    assert words in str(err.value)


def test_latest_skip_drops_exactly_the_bad_rows(tmp_path: Path) -> None:
    ratings = RATINGS + "3,1,NaN,1\n3,1,4.0,2\n3,1,4.5,3\n3,777,2.0,4\n3,99,9.0,5\n4,7,1.0,6\n"
    t = load_movielens(latest(tmp_path, ratings=ratings), on_error="skip")
    assert len(t.interactions) == 4 + 2
    assert t.interactions.tail(2)[["user_id", "item_id", "rating"]].values.tolist() == [
        ["3", "1", 4.0],
        ["4", "7", 1.0],
    ]
    got = [(i.line, i.field) for i in t.issues]
    assert got == [(6, "rating"), (10, "rating"), (8, "user_id"), (9, "item_id")]
    assert all(i.file.endswith("ratings.csv") for i in t.issues)
    assert "duplicate" in t.issues[2].reason and "777" in t.issues[3].reason


def test_duplicate_movie_id_raises_and_skip_keeps_first(tmp_path: Path) -> None:
    movies = MOVIES + "1,Toy Story Again (2020),Comedy\n"
    with pytest.raises(DataError) as err:
        load_movielens(latest(tmp_path / "a", movies=movies))
    assert err.value.line == 6 and err.value.field == "item_id" and "duplicate" in str(err.value)
    t = load_movielens(latest(tmp_path / "b", movies=movies), on_error="skip")
    assert t.items.set_index("item_id").loc["1", "title"] == "Toy Story"
    assert [(i.line, i.field) for i in t.issues] == [(6, "item_id")]


def test_malformed_row_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_movielens(latest(tmp_path, ratings=RATINGS + "3,1,4.0\n"))
    assert err.value.line == 6 and "expected 4 fields" in str(err.value)


@pytest.mark.parametrize("ts", ["99999999999999999999999", "9223372036854775808", "-1e30"])
def test_timestamp_out_of_int64_range_is_a_bad_row(tmp_path: Path, ts: str) -> None:
    """It loaded as -9223372036854775808 (MovieLens) or raised a raw OverflowError (generic)."""
    d = latest(tmp_path, ratings=RATINGS + f"3,1,4.0,{ts}\n")
    write(tmp_path / "inter.csv", f"user_id,item_id,timestamp\na,m1,1\nb,m1,{ts}\nc,m1,2\n")
    cases = [
        (lambda **kw: load_movielens(d, **kw), d / "ratings.csv", 6, 4),
        (lambda **kw: load_generic(tmp_path, interactions="inter.csv", **kw), tmp_path / "inter.csv", 3, 2),
    ]
    # (the generic reader refuses "-1e30" as an integer timestamp before its range: not an integer literal)
    message = "out of range|'-1e30' is not a finite integer" if ts == "-1e30" else "out of range"
    for load, file, line, kept in cases:
        with pytest.raises(DataError, match=message) as err:
            load()
        assert (err.value.file, err.value.line, err.value.field) == (str(file), line, "timestamp")
        t = load(on_error="skip")
        assert [(i.line, i.field) for i in t.issues] == [(line, "timestamp")]
        assert len(t.interactions) == kept
        assert t.interactions["timestamp"].dtype == np.int64 and t.interactions["timestamp"].min() > 0


@pytest.mark.parametrize("rest", [3, 20_000], ids=["small file", "past the csv field limit"])
def test_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path, rest: int) -> None:
    """It swallowed the rest of the file into one field, or raised a raw _csv.Error without file or line."""
    rows = "".join(f"{u},1,4.0,{u}\n" for u in range(10, 10 + rest))
    d = latest(tmp_path, ratings=RATINGS + '3,1,4.0,"964982703\n' + rows)
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError, match="never closed.*cannot be skipped") as err:
            load_movielens(d, on_error=on_error)
        assert (err.value.file, err.value.line) == (str(d / "ratings.csv"), 6)
    # a closed quoted field over several lines is still read
    d = latest(tmp_path / "ok", movies=MOVIES + '8,"Two\nLines",Drama\n')
    assert load_movielens(d).items.set_index("item_id").loc["8", "title"] == "Two\nLines"


def test_header_naming_a_column_twice(tmp_path: Path) -> None:
    ratings = "userId,movieId,rating,timestamp,rating\n1,1,4.0,964982703,1\n"
    with pytest.raises(DataError, match="line 1: column 'rating' appears twice") as err:
        load_movielens(latest(tmp_path, ratings=ratings))
    assert err.value.file == str(tmp_path / "ml-latest-small" / "ratings.csv")


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    tabbed = RATINGS.replace(",", "\t")
    with pytest.raises(DataError) as err:
        load_movielens(latest(tmp_path, ratings=tabbed))
    msg = str(err.value)
    assert "wrong delimiter" in msg and "'\\t'" in msg and err.value.line == 1


def test_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    d = latest(tmp_path)
    write(d / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\n8,Amélie (2001),Comedy\n", "latin-1")
    with pytest.raises(DataError) as err:
        load_movielens(d)
    assert err.value.line == 3 and "utf-8" in str(err.value)


def test_missing_column_empty_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp'\]"):
        load_movielens(latest(tmp_path / "a", ratings="userId,movieId,rating\n1,1,4.0\n"))
    with pytest.raises(DataError, match="empty"):
        load_movielens(latest(tmp_path / "b", ratings=""))
    d = latest(tmp_path / "c")
    (d / "movies.csv").unlink()
    with pytest.raises(DataError, match="no MovieLens files"):
        load_movielens(d)
    with pytest.raises(DataError, match="not found"):
        load_movielens(tmp_path / "nowhere")
    with pytest.raises(ConfigError):
        load_movielens(latest(tmp_path / "d"), on_error="ignore")


def test_tag_on_unknown_movie_is_rejected(tmp_path: Path) -> None:
    d = latest(tmp_path)
    write(d / "tags.csv", "userId,movieId,tag,timestamp\n2,1,pixar,1\n2,404,lost,2\n")
    with pytest.raises(DataError) as err:
        load_movielens(d)
    assert err.value.file.endswith("tags.csv") and err.value.line == 3 and err.value.field == "item_id"


# --- MovieLens 100k / 1m ------------------------------------------------------------------------

GENRES = "unknown|0\nAction|1\nComedy|2\nDrama|3\n\n"
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://imdb/toy|0|0|1|0\n"
    "2|Misérables, Les (1995)|01-Jan-1995||http://imdb/mis|0|0|0|1\n"
    "3|Shawshank Redemption, The (1994)|01-Jan-1994|||0|0|0|1\n"
    "4|unknown|01-Jan-1996|||1|0|0|0\n"
    "5|Heat (1995)|15-Dec-1995||http://imdb/heat|0|1|0|1\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"
U_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t3\t4\t878542960\n3\t5\t1\t876893119\n2\t1\t2\t876893120\n"


def ml100k(tmp_path: Path, *, data: str = U_DATA, item: str = U_ITEM) -> Path:
    d = tmp_path / "ml-100k"
    write(d / "u.genre", GENRES)
    write(d / "u.item", item, encoding="latin-1")
    write(d / "u.user", U_USER)
    write(d / "u.data", data)
    write(d / "u1.base", "1\t1\t5\t1\n1\t2\t3\t2\n2\t3\t4\t3\n")
    write(d / "u1.test", "3\t5\t1\t4\n2\t1\t2\t5\n")
    return d


def test_ml100k_reads_items_users_and_ratings(tmp_path: Path) -> None:
    t = load_movielens(ml100k(tmp_path))
    assert t.source == "ml-100k"
    items = t.items.set_index("item_id")
    assert items.loc["2", "title"] == "Misérables, Les" and items.loc["2", "year"] == 1995
    assert items.loc["1", "genres"] == ("Comedy",)
    assert items.loc["5", "genres"] == ("Action", "Drama")
    assert items.loc["4", "genres"] == ()  # only the "unknown" flag
    assert items.loc["4", "title"] == "unknown" and items.loc["4", "year"] == 1996  # from the release date
    assert items.loc["1", "url"] == "http://imdb/toy" and pd.isna(items.loc["3", "url"])
    assert t.users.set_index("user_id").loc["3", "zip_code"] == "T8H1N"
    assert t.users["age"].tolist() == [24, 53, 23]
    assert len(t.interactions) == 5 and t.interactions["rating"].max() == 5.0


def test_ml100k_utf8_copy_is_read_as_utf8(tmp_path: Path) -> None:
    d = ml100k(tmp_path)
    write(d / "u.item", U_ITEM, encoding="utf-8")
    assert load_movielens(d).items.set_index("item_id").loc["2", "title"] == "Misérables, Les"


@pytest.mark.parametrize(
    ("row", "field"), [("1\t3\t0.5\t1", "rating"), ("1\t3\t6\t1", "rating"), ("9\t1\t3\t1", "user_id")]
)
def test_ml100k_bad_rating_rows(tmp_path: Path, row: str, field: str) -> None:
    with pytest.raises(DataError) as err:
        load_movielens(ml100k(tmp_path, data=U_DATA + row + "\n"))
    assert err.value.line == 6 and err.value.field == field


def test_ml100k_bad_genre_flag_and_field_count(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_movielens(ml100k(tmp_path / "a", item=U_ITEM + "6|X (1990)||||0|2|0|0\n"))
    assert err.value.line == 6 and err.value.field == "g1" and "Action" in str(err.value)
    with pytest.raises(DataError) as err:
        load_movielens(ml100k(tmp_path / "b", item=U_ITEM + "6|X (1990)|||0|0|0|0\n"))
    assert err.value.line == 6 and "expected 9 fields" in str(err.value)


def test_ml100k_official_split(tmp_path: Path) -> None:
    d = ml100k(tmp_path)
    t = load_movielens_100k_split(d, "u1")
    assert t.source == "ml-100k/u1"
    assert t.interactions["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert no_reader_attrs(t) and no_reader_attrs(load_movielens(d))
    validate("interactions", t.interactions)
    write(d / "u1.test", "3\t5\t1\t4\n1\t2\t2\t5\n")
    with pytest.raises(DataError) as err:
        load_movielens_100k_split(d, "u1")
    assert err.value.file.endswith("u1.test") and err.value.line == 2 and "u1.base" in str(err.value)
    t = load_movielens_100k_split(d, "u1", on_error="skip")
    assert t.interactions["split"].tolist() == ["train"] * 3 + ["test"]
    assert [(i.line, i.field) for i in t.issues] == [(2, "item_id")]
    with pytest.raises(ConfigError, match="u6"):
        load_movielens_100k_split(d, "u6")


def test_ml1m_double_colon_latin1(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(
        d / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n",
        "latin-1",
    )
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(d / "ratings.dat", "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n")
    t = load_movielens(d)
    assert t.source == "ml-1m"
    assert t.items["title"].tolist() == ["Toy Story", "Amélie"]
    assert t.items["genres"].tolist() == [("Animation", "Children's", "Comedy"), ("Comedy", "Romance")]
    assert t.users["occupation"].tolist() == ["10", "16"] and t.users["age"].tolist() == [1, 56]
    assert t.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    write(d / "ratings.dat", "1::1::5::978300760\n1::2::3:978302109\n")
    with pytest.raises(DataError) as err:
        load_movielens(d)
    assert err.value.line == 2 and "'::'" in str(err.value)


def test_movie_wiki_exact_then_normalised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = load_movielens(ml100k(tmp_path)).items
    # a copy that lost its latin-1 characters: the title as u.item writes it in such a copy
    items.loc[items["item_id"] == "2", "raw_title"] = "Mis\ufffdrables, Les (1995)"
    wiki = write(
        tmp_path / "movie_wiki.csv",
        "movie_title,wiki_summary\n"
        'Toy Story (1995),"Toy Story is a 1995 film, by Pixar."\n'
        "The Shawshank Redemption (1994),A 1994 drama.\n"
        '"Misérables, Les (1995)",A 1995 French film.\n'
        "Nothing Like It (2000),Unmatched.\n",
    )
    with caplog.at_level(logging.INFO, logger="kg_builders.sources.movielens"):
        out = load_movie_wiki(wiki, items)
    text = out.set_index("item_id")["text"]
    assert text["1"] == "Toy Story is a 1995 film, by Pixar."
    assert text["3"] == "A 1994 drama."
    assert text["2"] == "A 1995 French film."
    assert pd.isna(text["4"]) and pd.isna(text["5"])
    assert items["text"].isna().all()  # the input is not changed
    validate("items", out)
    assert "text for 3 of 5 items (1 exact, 2 normalised" in caplog.text


def test_movielens_and_generic_repeated_tag_rows_are_one_assignment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # as in the Last.fm reader: a (user, item, tag) written twice is one assignment at its earliest time
    d = latest(tmp_path)
    tags = "userId,movieId,tag,timestamp\n2,1,pixar,1445714994\n2,11,politics,1445714996\n"
    write(d / "tags.csv", tags + "2,1,pixar,1445714000\n2,1,Pixar,1445714999\n")  # "Pixar": another spelling
    with caplog.at_level(logging.INFO, logger="kg_builders.sources.movielens"):
        ta = load_movielens(d).tag_assignments
    assert ta[["user_id", "item_id", "tag"]].values.tolist() == [
        ["2", "1", "pixar"],
        ["2", "11", "politics"],
        ["2", "1", "Pixar"],
    ]
    assert ta["timestamp"].tolist() == [1445714000, 1445714996, 1445714999]
    assert "1 repeated (user, movie, tag) row(s) counted once" in caplog.text

    write(tmp_path / "inter.csv", "user_id,item_id\nalice,m1\n")
    write(
        tmp_path / "tags.csv",
        "item_id,tag,user_id,timestamp\nm1,funny,alice,20\nm1,funny,,30\nm1,funny,alice,10\nm1,funny,,40\n",
    )
    write(tmp_path / "anon.csv", "item_id,tag\nm1,funny\nm1,funny\n")
    with caplog.at_level(logging.INFO, logger="kg_builders.sources.generic"):
        ta = load_generic(tmp_path, interactions="inter.csv", tags="tags.csv").tag_assignments
    assert ta["user_id"].tolist()[0] == "alice" and ta["user_id"].isna().tolist() == [False, True, True]
    assert ta["timestamp"].tolist() == [10, 30, 40]  # two tags by unknown users may be two people's: kept
    assert "1 repeated (user_id, item_id, tag) row(s) counted once" in caplog.text
    assert len(load_generic(tmp_path, interactions="inter.csv", tags="anon.csv").tag_assignments) == 2


# --- Last.fm HetRec -----------------------------------------------------------------------------


def lastfm(tmp_path: Path, *, tagged: str | None = None, artists: str | None = None) -> Path:
    d = tmp_path / "hetrec2011-lastfm-2k"
    write(
        d / "artists.dat",
        artists
        or 'id\tname\turl\tpictureURL\n1\tMALICE MIZER\thttp://l/1\thttp://p/1\n2\tBjörk "live"\thttp://l/2\t\n',
    )
    write(d / "user_artists.dat", "userID\tartistID\tweight\r\n2\t1\t13883\r\n2\t2\t11690\r\n3\t1\t5\r\n")
    write(d / "tags.dat", "tagID\ttagValue\r\n1\tmetal\r\n2\trock français\r\n", "latin-1")
    write(
        d / "user_taggedartists.dat",
        tagged or "userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t1\t1\t1\t4\t2009\r\n2\t9\t2\t1\t5\t1956\r\n",
        "latin-1",
    )
    write(d / "user_friends.dat", "userID\tfriendID\r\n2\t3\r\n3\t2\r\n")
    return d


def test_lastfm_reads_every_table(tmp_path: Path) -> None:
    t = load_hetrec_lastfm(lastfm(tmp_path))
    assert t.source == "hetrec2011-lastfm-2k"
    assert t.interactions["rating"].tolist() == [13883.0, 11690.0, 5.0]
    assert t.items["title"].tolist() == ["MALICE MIZER", 'Björk "live"']
    assert t.items["url"].tolist() == ["http://l/1", "http://l/2"] and pd.isna(t.items["picture_url"].iloc[1])
    ta = t.tag_assignments
    assert ta["tag"].tolist() == ["metal", "rock français"]
    assert ta["timestamp"].tolist() == [1238544000, -431395200]  # 2009-04-01 and 1956-05-01, 00:00 UTC
    assert ta["item_id"].tolist() == ["1", "9"]  # artist 9 is not in artists.dat: kept
    assert t.social.values.tolist() == [["2", "3"], ["3", "2"]]
    assert no_reader_attrs(t)


def test_lastfm_unknown_tag_id(tmp_path: Path) -> None:
    tagged = "userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t1\t1\t1\t4\t2009\r\n2\t1\t77\t1\t4\t2009\r\n3\t2\t2\t1\t4\t2009\r\n"
    with pytest.raises(DataError) as err:
        load_hetrec_lastfm(lastfm(tmp_path / "a", tagged=tagged))
    assert err.value.line == 3 and err.value.field == "tag_id" and "77" in str(err.value)
    t = load_hetrec_lastfm(lastfm(tmp_path / "b", tagged=tagged), on_error="skip")
    assert t.tag_assignments["tag"].tolist() == ["metal", "rock français"]
    assert [(i.line, i.field) for i in t.issues] == [(3, "tag_id")]


def test_lastfm_bad_date_and_encoding(tmp_path: Path) -> None:
    tagged = "userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t1\t1\t30\t2\t2009\r\n"
    with pytest.raises(DataError) as err:
        load_hetrec_lastfm(lastfm(tmp_path / "a", tagged=tagged))
    assert err.value.line == 2 and err.value.field == "day"
    d = lastfm(tmp_path / "b")
    write(d / "artists.dat", "id\tname\turl\tpictureURL\n1\tA\tu\tp\n2\tBjörk\tu\tp\n", "latin-1")
    with pytest.raises(DataError) as err:
        load_hetrec_lastfm(d)
    assert err.value.file.endswith("artists.dat") and err.value.line == 3 and "utf-8" in str(err.value)


def test_lastfm_repeated_tag_row_is_one_assignment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from kg_builders.builders import TagBuilder

    head = "userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
    rows = "2\t1\t1\t1\t5\t2009\r\n3\t2\t2\t1\t4\t2009\r\n"
    # the file concatenated with itself (no second header), and user 2's row again with an earlier date
    tagged = head + rows + rows + "2\t1\t1\t1\t4\t2009\r\n"
    with caplog.at_level(logging.INFO, logger="kg_builders.sources.lastfm"):
        t = load_hetrec_lastfm(lastfm(tmp_path, tagged=tagged))
    ta = t.tag_assignments
    assert ta[["user_id", "item_id", "tag"]].values.tolist() == [["2", "1", "metal"], ["3", "2", "rock français"]]
    assert ta["timestamp"].tolist() == [1238544000, 1238544000]  # 2009-04-01: the earliest of user 2's copies
    assert t.issues == () and "3 repeated (user, artist, tag) row(s) counted once" in caplog.text
    frag = TagBuilder().build(t)
    assert frag.nodes["tag"].attrs["count"] == [1, 1]
    assert frag.edges[("item", "tagged_with", "tag")].weight.tolist() == [1.0, 1.0]
    assert frag.edges[("user", "uses_tag", "tag")].weight.tolist() == [1.0, 1.0]


# --- LightGCN / KGAT ----------------------------------------------------------------------------


def test_lightgcn_adjacency_with_empty_user_line(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "0 1 2 3\n1\n2 3  4 \n")
    test = write(tmp_path / "test.txt", "0 4\n2 1\n")
    assert detect_lightgcn_layout(train) == "adjacency"
    t = load_lightgcn(train, test, layout="adjacency")
    inter = t.interactions
    assert inter[["user_id", "item_id"]].values.tolist() == [
        ["0", "1"], ["0", "2"], ["0", "3"], ["2", "3"], ["2", "4"], ["0", "4"], ["2", "1"]
    ]  # fmt: skip
    assert inter["split"].tolist() == ["train"] * 5 + ["test"] * 2
    assert t.users["user_id"].tolist() == ["0", "1", "2"]  # user 1 has no items but exists
    assert t.source == "lightgcn" and t.social is None and no_reader_attrs(t)
    assert load_lightgcn(train, test).interactions.equals(inter)  # detected layout


def test_lightgcn_pairs_with_extra_column_and_social(tmp_path: Path) -> None:
    train = write(tmp_path / "data1.txt", "424\t4076\t993\r\n1311\t1574\t957\r\n424\t10\t5\r\n")
    test = write(tmp_path / "test1.txt", "1320 121 57\n")
    social = write(tmp_path / "trustnetwork.txt", "1\t258\r\n1\t401\r\n")
    assert detect_lightgcn_layout(train) == "pairs"
    t = load_lightgcn(train, test, layout="pairs", social_path=social)
    assert t.interactions[["user_id", "item_id", "split"]].values.tolist() == [
        ["424", "4076", "train"], ["1311", "1574", "train"], ["424", "10", "train"], ["1320", "121", "test"]
    ]  # fmt: skip
    assert t.social.values.tolist() == [["1", "258"], ["1", "401"]]


def test_lightgcn_bad_rows(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "0 1 2\n1 x 3\n2 3 3\n")
    with pytest.raises(DataError) as err:
        load_lightgcn(train, layout="adjacency")
    assert err.value.line == 2 and err.value.field == "item_id"
    t = load_lightgcn(train, layout="adjacency", on_error="skip")
    assert t.interactions[["user_id", "item_id"]].values.tolist() == [["0", "1"], ["0", "2"], ["1", "3"], ["2", "3"]]
    assert [(i.line, i.field) for i in t.issues] == [(2, "item_id"), (3, "user_id")]
    assert "duplicate" in t.issues[1].reason
    pairs = write(tmp_path / "pairs.txt", "user\titem\n1\t2\n")
    with pytest.raises(DataError) as err:
        load_lightgcn(pairs, layout="pairs")
    assert err.value.line == 1 and err.value.field == "user_id"
    with pytest.raises(ConfigError, match="layout"):
        load_lightgcn(pairs, layout="csv")


# --- KG triples ---------------------------------------------------------------------------------


def test_kg_triples_tab_and_whitespace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kg = write(
        tmp_path / "kg.txt",
        "749\tfilm.film.writer\t2347\r\n1410\tfilm.film.language\t2348\r\n749\tfilm.film.writer\t2347\r\n",
    )
    imap = write(tmp_path / "item_index2entity_id.txt", "0002005018\t0\r\n2\t749\r\n2\t749\r\n")
    with caplog.at_level(logging.INFO, logger="kg_builders.sources.kg_triples"):
        triples, ie = load_kg_triples(kg, imap)
    assert triples.values.tolist() == [["749", "film.film.writer", "2347"], ["1410", "film.film.language", "2348"]]
    assert "removed 1 duplicate triple" in caplog.text
    assert ie.values.tolist() == [["0002005018", "0"], ["2", "749"]]
    spaced = write(tmp_path / "kg_final.txt", "0 0 1\n1  1   2\n")
    triples, ie = load_kg_triples(spaced)
    assert triples.values.tolist() == [["0", "0", "1"], ["1", "1", "2"]] and ie is None


def test_kg_triples_bad_line_and_double_mapping(tmp_path: Path) -> None:
    kg = write(tmp_path / "kg.txt", "1\tr\t2\n3\tr\n4\tr\t5\n")
    with pytest.raises(DataError) as err:
        load_kg_triples(kg)
    assert err.value.line == 2 and "expected 3 fields" in str(err.value)
    triples, _ = load_kg_triples(kg, on_error="skip")
    assert triples["head"].tolist() == ["1", "4"]
    good = write(tmp_path / "good.txt", "1\tr\t2\n")
    imap = write(tmp_path / "map.txt", "10\t1\n11\t2\n10\t2\n")
    with pytest.raises(DataError) as err:
        load_kg_triples(good, imap)
    assert err.value.line == 3 and err.value.field == "entity_id" and "'1'" in str(err.value)
    _, ie = load_kg_triples(good, imap, on_error="skip")
    assert ie.values.tolist() == [["10", "1"], ["11", "2"]]
    with pytest.raises(DataError, match="not found"):
        load_kg_triples(tmp_path / "missing.txt")


# --- RDF ----------------------------------------------------------------------------------------

TTL = """@prefix ex: <http://example.org/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
ex:m1 ex:itemId "1" ; ex:director ex:p1 ; ex:title "Alpha"@en ; ex:year "1990"^^xsd:integer .
ex:m2 ex:itemId "2" ; ex:director ex:p1 ; ex:genre [ ex:label "drama" ] .
"""


def test_rdf_turtle_with_item_predicate(tmp_path: Path) -> None:
    triples, literals, ie = load_rdf(write(tmp_path / "kg.ttl", TTL), item_predicate="ex:itemId")
    resources = triples[~triples["tail"].str.startswith("_:")].values.tolist()
    assert resources == [
        ["http://example.org/m1", "http://example.org/director", "http://example.org/p1"],
        ["http://example.org/m2", "http://example.org/director", "http://example.org/p1"],
    ]
    bnode = triples[triples["tail"].str.startswith("_:")]
    assert bnode[["head", "relation"]].values.tolist() == [["http://example.org/m2", "http://example.org/genre"]]
    lit = literals.set_index("predicate")
    assert (
        lit.loc["http://example.org/title", "value"] == "Alpha" and lit.loc["http://example.org/title", "lang"] == "en"
    )
    assert lit.loc["http://example.org/year", "datatype"] == "http://www.w3.org/2001/XMLSchema#integer"
    assert lit.loc["http://example.org/label", "subject"] == bnode["tail"].iloc[0]
    assert "http://example.org/itemId" not in set(literals["predicate"])
    assert ie.values.tolist() == [["1", "http://example.org/m1"], ["2", "http://example.org/m2"]]


def test_rdf_ntriples_with_item_map(tmp_path: Path) -> None:
    nt = write(tmp_path / "kg.nt", '<http://a/m1> <http://a/dir> <http://a/p1> .\n<http://a/m1> <http://a/t> "X" .\n')
    item_map = pd.DataFrame({"item_id": ["i1"], "entity_id": ["http://a/m1"]})
    triples, literals, ie = load_rdf(nt, item_map=item_map)
    assert triples.values.tolist() == [["http://a/m1", "http://a/dir", "http://a/p1"]]
    assert literals[["subject", "value"]].values.tolist() == [["http://a/m1", "X"]]
    assert ie.values.tolist() == [["i1", "http://a/m1"]]
    _, _, empty = load_rdf(nt)
    assert list(empty.columns) == ["item_id", "entity_id"] and empty.empty


def test_rdf_errors(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.ttl", "@prefix ex: <http://e/> .\nex:a ex:p ex:b .\nex:a ex:q ex:c\nex:d .\n")
    with pytest.raises(DataError) as err:
        load_rdf(bad)
    assert err.value.file == str(bad) and err.value.line == 4 and "turtle" in str(err.value)
    with pytest.raises(DataError, match="not valid nt") as err:
        load_rdf(write(tmp_path / "bad.nt", "<http://a> <http://p> <http://b> .\n\n<http://a> <http://p> broken .\n"))
    assert err.value.line == 3 and "broken" in str(err.value)  # rdflib's own error names neither
    # a statement left open at the end of the file is on its last line, not on the line after it
    for text in ("@prefix ex: <http://e/> .\nex:a ex:p ex:b .\nex:c ex:p ex:d\n\n", "ex:a <http://p> <http://b> ;"):
        with pytest.raises(DataError) as err:
            load_rdf(write(tmp_path / "open.ttl", text))
        assert err.value.line == text.rstrip().count("\n") + 1, str(err.value)
    with pytest.raises(ConfigError, match="format"):
        load_rdf(write(tmp_path / "kg.data", "x"))
    good = write(tmp_path / "kg.ttl", TTL)
    with pytest.raises(ConfigError, match="not both"):
        load_rdf(good, item_predicate="ex:itemId", item_map=pd.DataFrame({"item_id": ["1"], "entity_id": ["x"]}))
    with pytest.raises(ConfigError, match="zz"):
        load_rdf(good, item_predicate="zz:itemId")
    twice = write(tmp_path / "twice.ttl", TTL + 'ex:m3 ex:itemId "1" .\n')
    with pytest.raises(DataError, match="more than one entity"):
        load_rdf(twice, item_predicate="ex:itemId")
    _, _, ie = load_rdf(twice, item_predicate="ex:itemId", on_error="skip")
    assert ie.values.tolist() == [["1", "http://example.org/m1"], ["2", "http://example.org/m2"]]
    with pytest.raises(DataError, match="not found"):
        load_rdf(tmp_path / "missing.ttl")


# A file with named graphs is read as the union of its graphs: the default graph and every named one
TRIG = """@prefix ex: <http://example.org/> .
ex:m1 ex:itemId "1" ; ex:director ex:p1 .
ex:g1 {
  ex:m2 ex:itemId "2" ; ex:director ex:p1 ; ex:award _:a .
  ex:m1 ex:director ex:p1 .
}
ex:g2 { _:a ex:name "Oscar" . }
"""
NQUADS = """<http://example.org/m1> <http://example.org/itemId> "1" .
<http://example.org/m1> <http://example.org/director> <http://example.org/p1> .
<http://example.org/m2> <http://example.org/itemId> "2" <http://example.org/g1> .
<http://example.org/m2> <http://example.org/director> <http://example.org/p1> <http://example.org/g1> .
<http://example.org/m2> <http://example.org/award> _:a <http://example.org/g1> .
<http://example.org/m1> <http://example.org/director> <http://example.org/p1> <http://example.org/g1> .
_:a <http://example.org/name> "Oscar" <http://example.org/g2> .
"""


@pytest.mark.parametrize(("name", "text"), [("kg.trig", TRIG), ("kg.nq", NQUADS)])
def test_rdf_quad_formats_read_the_statements_of_every_graph(tmp_path: Path, name: str, text: str) -> None:
    f = write(tmp_path / name, text)
    item_predicate = "ex:itemId" if name.endswith(".trig") else "http://example.org/itemId"
    triples, literals, ie = load_rdf(f, item_predicate=item_predicate)  # the format guessed from the suffix
    ex = "http://example.org/"
    award = triples.loc[triples["relation"] == ex + "award", "tail"].tolist()
    assert len(award) == 1 and award[0].startswith("_:")
    # ex:m1 ex:director ex:p1 is in the default graph and in ex:g1: one triple
    assert triples.values.tolist() == [
        [ex + "m1", ex + "director", ex + "p1"],
        [ex + "m2", ex + "award", award[0]],
        [ex + "m2", ex + "director", ex + "p1"],
    ]
    # the blank node of ex:g1 and of ex:g2 is one node: its name hangs on the award
    assert literals[["subject", "predicate", "value"]].values.tolist() == [[award[0], ex + "name", "Oscar"]]
    # the item predicate maps the items of the default graph and of a named graph
    assert ie.values.tolist() == [["1", ex + "m1"], ["2", ex + "m2"]]
    again, lit_again, ie_again = load_rdf(f, item_predicate=item_predicate)
    assert again.equals(triples) and lit_again.equals(literals) and ie_again.equals(ie)
    _, plain, _ = load_rdf(f)
    assert sorted(plain["value"]) == ["1", "2", "Oscar"]


def test_rdf_item_predicate_prefixes_of_quad_formats_are_the_files_own(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prefix 'schema' .*declared: \['ex'\]"):
        load_rdf(write(tmp_path / "kg.trig", TRIG), item_predicate="schema:identifier")
    # N-Quads declares no prefixes: rdflib's own (schema:, foaf:, ...) are not offered as the file's
    with pytest.raises(ConfigError, match=r"nquads declares no prefixes; pass the full IRI"):
        load_rdf(write(tmp_path / "kg.nq", NQUADS), item_predicate="schema:identifier")


def test_rdf_jsonld_named_graph_statements_are_read(tmp_path: Path) -> None:
    import json

    doc = {
        "@context": {"ex": "http://example.org/"},
        "@graph": [
            {"@id": "ex:m1", "ex:itemId": "1"},
            {"@id": "ex:g1", "@graph": [{"@id": "ex:m2", "ex:itemId": "2", "ex:director": {"@id": "ex:p1"}}]},
        ],
    }
    triples, _, ie = load_rdf(write(tmp_path / "kg.jsonld", json.dumps(doc)), item_predicate="ex:itemId")
    ex = "http://example.org/"
    assert triples.values.tolist() == [[ex + "m2", ex + "director", ex + "p1"]]
    assert ie.values.tolist() == [["1", ex + "m1"], ["2", ex + "m2"]]


# --- generic ------------------------------------------------------------------------------------


def test_generic_csv_tsv_and_relative_paths(tmp_path: Path) -> None:
    write(tmp_path / "inter.csv", "user_id,item_id,rating,timestamp,split\nalice,m1,4.5,17,train\nbob,m1,3,18,test\n")
    write(
        tmp_path / "items.tsv",
        "item_id\ttitle\tyear\tgenres\ttext\textra\nm1\tAlpha\t1990\tDrama|Comedy\tA film.\tx\nm2\tBeta\t\t\t\ty\n",
    )
    write(tmp_path / "tags.csv", "item_id,tag,user_id\nm1,funny,alice\n")
    write(tmp_path / "kg.csv", "head,relation,tail\nm1,directed_by,p1\nm1,directed_by,p1\n")
    write(tmp_path / "ie.csv", "item_id,entity_id\nm1,m1\n")
    write(tmp_path / "users.csv", "user_id,age\nalice,30\nbob,40\n")
    write(tmp_path / "social.csv", "user_id,friend_id\nalice,bob\n")
    t = load_generic(
        tmp_path,
        interactions="inter.csv",
        items="items.tsv",
        tags="tags.csv",
        triples="kg.csv",
        item_entities="ie.csv",
        users="users.csv",
        social=tmp_path / "social.csv",
    )
    assert t.source == "generic"
    assert t.interactions["rating"].tolist() == [4.5, 3.0] and t.interactions["timestamp"].dtype == np.int64
    assert t.interactions["split"].tolist() == ["train", "test"]
    items = t.items.set_index("item_id")
    assert items.loc["m1", "genres"] == ("Drama", "Comedy") and items.loc["m2", "genres"] == ()
    assert items.loc["m1", "year"] == 1990 and pd.isna(items.loc["m2", "year"]) and pd.isna(items.loc["m2", "text"])
    assert items.loc["m2", "extra"] == "y"
    assert len(t.triples) == 1 and t.counts()["tag_assignments"] == 1
    assert t.users["age"].tolist() == ["30", "40"]  # attribute columns are kept as read
    assert no_reader_attrs(t)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("user_id,item_id,rating\na,m1,4\nb,m1,nan\n", 3, "rating"),
        ("user_id,item_id,rating\na,m1,4\nb,m1,\n", 3, "rating"),
        ("user_id,item_id,split\na,m1,train\nb,m1,holdout\n", 3, "split"),
        ("user_id,item_id\na,m1\n,m1\n", 3, "user_id"),
        ("user_id,item_id\na,m1\na,m1\n", 3, "user_id"),
        ("user_id,item_id\na,m1\nb,m9\n", 3, "item_id"),
        ("user_id,item_id\na,m1\nb,m1,extra\n", 3, None),
    ],
)
def test_generic_bad_interactions(tmp_path: Path, text: str, line: int, field: str | None) -> None:
    write(tmp_path / "items.csv", "item_id\nm1\n")
    write(tmp_path / "inter.csv", text)
    with pytest.raises(DataError) as err:
        load_generic(tmp_path, interactions="inter.csv", items="items.csv")
    assert err.value.line == line and err.value.field == field
    t = load_generic(tmp_path, interactions="inter.csv", items="items.csv", on_error="skip")
    assert len(t.interactions) == 1 and [(i.line, i.field) for i in t.issues] == [(line, field)]


def test_generic_parquet_gets_the_same_checks(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow is the parquet extra")
    import pyarrow.parquet as pq

    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": ["a", "b", "a"], "rating": [4.0, np.nan, 2.0]})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "inter.parquet")
    items = pd.DataFrame({"item_id": ["a", "b"], "genres": [["Drama"], []], "year": [1990, None]})
    pq.write_table(pa.Table.from_pandas(items), tmp_path / "items.parquet")
    with pytest.raises(DataError) as err:
        load_generic(tmp_path, interactions="inter.parquet", items="items.parquet")
    assert err.value.line == 2 and err.value.field == "rating"  # row index 1 -> line 2
    t = load_generic(tmp_path, interactions="inter.parquet", items="items.parquet", on_error="skip")
    assert t.interactions["user_id"].tolist() == ["1", "3"]
    assert t.items["genres"].tolist() == [("Drama",), ()] and t.items["year"].isna().tolist() == [False, True]
    assert [(i.line, i.field) for i in t.issues] == [(2, "rating")]
    pq.write_table(pa.Table.from_pandas(pd.DataFrame({"user_id": ["x"]})), tmp_path / "nocol.parquet")
    with pytest.raises(DataError, match="missing column"):
        load_generic(tmp_path, interactions="nocol.parquet")


def test_generic_file_errors(tmp_path: Path) -> None:
    write(tmp_path / "inter.json", "{}")
    with pytest.raises(ConfigError, match="unsupported"):
        load_generic(tmp_path, interactions="inter.json")
    with pytest.raises(DataError, match="not found"):
        load_generic(tmp_path, interactions="absent.csv")
    write(tmp_path / "dup.csv", "item_id,title\nm1,A\nm1,B\n")
    write(tmp_path / "inter.csv", "user_id,item_id\na,m1\n")
    with pytest.raises(DataError) as err:
        load_generic(tmp_path, interactions="inter.csv", items="dup.csv")
    assert err.value.line == 3 and "duplicate" in str(err.value)
    write(tmp_path / "ie.csv", "item_id,entity_id\nm1,e1\nm1,e1\nm1,e2\n")
    with pytest.raises(DataError) as err:
        load_generic(tmp_path, interactions="inter.csv", item_entities="ie.csv")
    assert err.value.line == 4 and err.value.field == "entity_id"


# --- the shared reader extensions ---------------------------------------------------------------


def test_whitespace_separator_and_reject_rows(tmp_path: Path) -> None:
    f = write(tmp_path / "x.txt", "a  b\tc\n\nd e f\n")
    frame, issues = read_delimited(f, sep=None, header=False, columns=["x", "y", "z"])
    assert frame.values.tolist() == [["a", "b", "c"], ["d", "e", "f"]] and issues == []
    kept, issues = reject_rows(frame, np.array([True, False]), field="x", reason="no", on_error="skip")
    assert kept.values.tolist() == [["d", "e", "f"]] and kept.attrs["lines"].tolist() == [3]
    assert [(i.line, i.field, i.reason) for i in issues] == [(1, "x", "no")]
    with pytest.raises(DataError) as err:
        reject_rows(frame, np.array([False, True]), field="y", reason=lambda i: f"row {i}", on_error="raise")
    assert err.value.line == 3 and err.value.reason == "row 1"
    with pytest.raises(DataError, match="whitespace"):
        read_delimited(write(tmp_path / "y.txt", "a b\n"), sep=None, header=False, columns=["x", "y", "z"])


# ------------------------------------------------------------------ leaks and misreadings a review found
def test_a_generic_pair_in_two_parts_is_a_duplicate(tmp_path):
    (tmp_path / "interactions.csv").write_text("user_id,item_id,split\nu1,i1,train\nu1,i2,train\nu1,i1,test\n")
    with pytest.raises(DataError, match=r"interactions.csv, line 4, field 'user_id': duplicate user_id, item_id"):
        load_generic(tmp_path, interactions="interactions.csv")


def test_a_lightgcn_test_pair_that_also_trains_is_refused_or_skipped(tmp_path):
    (tmp_path / "train.txt").write_text("0\t1\n0\t2\n1\t1\n")
    (tmp_path / "test.txt").write_text("0\t3\n0\t1\n")
    with pytest.raises(DataError, match=r"test.txt, line 2, field 'item_id': \(user '0', item '1'\) is also in train"):
        load_lightgcn(tmp_path / "train.txt", tmp_path / "test.txt", layout="pairs")
    t = load_lightgcn(tmp_path / "train.txt", tmp_path / "test.txt", layout="pairs", on_error="skip")
    test = t.interactions[t.interactions["split"] == "test"]
    assert list(zip(test["user_id"], test["item_id"], strict=True)) == [("0", "3")]
    assert [(i.line, i.field) for i in t.issues] == [(2, "item_id")]


def test_a_repeated_header_line_is_not_data(tmp_path):
    f = tmp_path / "movies.csv"
    f.write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\nmovieId,title,genres\n2,Jumanji (1995),Adventure\n")
    with pytest.raises(DataError, match=r"movies.csv, line 3: the header line is repeated here"):
        read_delimited(f, sep=",", columns=["movieId", "title", "genres"], on_error="raise")
    frame, issues = read_delimited(f, sep=",", columns=["movieId", "title", "genres"], on_error="skip")
    assert frame["movieId"].tolist() == ["1", "2"] and [i.line for i in issues] == [3]


def test_movielens_ids_and_integers_are_written_in_digits(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n3,Heat (1995),Action\n")
    for row, field in (
        ("1.0,3,4.0,964982704", "user_id"),
        ("01,3,4.0,964982704", "user_id"),
        ("2,3,2.0,9.6e8", "timestamp"),
    ):
        (d / "ratings.csv").write_text(f"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n{row}\n")
        with pytest.raises(DataError, match=rf"ratings.csv, line 3, field '{field}'"):
            load_movielens(d)


def test_rdf_blank_nodes_load_the_same_every_time(tmp_path):
    f = tmp_path / "movies.ttl"
    f.write_text(
        "@prefix ex: <http://example.org/> .\n"
        'ex:m1 ex:itemId "1" ; ex:award [ ex:name "Oscar" ] ; ex:director _:d1 .\n'
        '_:d1 ex:name "Someone" .\n'
    )
    a, la, _ = load_rdf(f, item_predicate="ex:itemId")
    b, lb, _ = load_rdf(f, item_predicate="ex:itemId")
    assert a.equals(b) and la.equals(lb)
    assert any(str(t).startswith("_:") for t in a["tail"])


def test_skipped_kg_lines_reach_the_tables_issues(tmp_path):
    from kg_builders.sources.kg_triples import join_kg_folder

    (tmp_path / "kg.txt").write_text("0\tfilm.film.director\t100\n1\tfilm.film.genre\n2\tfilm.film.star\t101\n")
    (tmp_path / "item_index2entity_id.txt").write_text("1\t0\n2\t1\n")
    t = Tables(interactions=pd.DataFrame({"user_id": ["u"], "item_id": ["1"]}))
    joined = join_kg_folder(t, tmp_path, on_error="skip")
    assert len(joined.triples) == 2
    assert [(Path(i.file).name, i.line) for i in joined.issues] == [("kg.txt", 2)]


def test_knowledge_self_loops_and_nameless_attributes_are_dropped_and_counted():
    from kg_builders.builders import ItemAttributeBuilder, KnowledgeBuilder

    t = Tables(
        interactions=pd.DataFrame({"user_id": ["u", "u"], "item_id": ["1", "2"]}),
        triples=pd.DataFrame({"head": ["e1", "e9"], "relation": ["similar", "same"], "tail": ["e1", "e9"]}),
        item_entities=pd.DataFrame({"item_id": ["1", "2"], "entity_id": ["e1", "e1"]}),
    )
    frag = KnowledgeBuilder().build(t)
    assert not [(s, d) for b in frag.edges.values() for s, d in zip(b.src, b.dst, strict=True) if s == d]
    assert [(d.reason, d.count) for d in frag.dropped if d.reason == "self-loops"] == [("self-loops", 3)]
    items = pd.DataFrame(
        {"item_id": ["1", "2", "3"], "genres": pd.Series([("--",), ("?",), ("Comedy",)], dtype=object)}
    )
    frag = ItemAttributeBuilder().build(Tables(interactions=t.interactions, items=items))
    assert frag.nodes["entity"].ids == ["genre:comedy"]
    assert [d.count for d in frag.dropped] == [2]


# ------------------------------------------------------------------ LightGCN layouts and ids a review found
def test_lightgcn_train_and_test_are_read_in_one_layout(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "1 10 5\n1 11 3\n2 10 4\n2 14 1\n")  # pairs with a third column
    test = write(tmp_path / "test.txt", "1 12 7\n2 13 2\n")  # alone, this reads as one user per line
    with pytest.raises(DataError, match=r"pass layout='adjacency' or layout='pairs'") as err:
        load_lightgcn(train, test)
    assert err.value.file == str(test) and f"{train} looks like 'pairs'" in str(err.value)
    t = load_lightgcn(train, test, layout="pairs")
    test_rows = t.interactions[t.interactions["split"] == "test"]
    assert test_rows[["user_id", "item_id"]].values.tolist() == [["1", "12"], ["2", "13"]]  # no weight as an item
    # two fields on every line fit either layout, so the other file decides, whichever it is
    adjacency = write(tmp_path / "adjacency.txt", "1 10 11\n2 10\n")
    one_each = write(tmp_path / "one_each.txt", "1 12\n2 13\n")
    t = load_lightgcn(adjacency, one_each)
    assert t.interactions[["user_id", "item_id", "split"]].values.tolist() == [
        ["1", "10", "train"], ["1", "11", "train"], ["2", "10", "train"], ["1", "12", "test"], ["2", "13", "test"]
    ]  # fmt: skip
    t = load_lightgcn(one_each, adjacency)
    assert t.interactions["item_id"].tolist() == ["12", "13", "10", "11", "10"]


def test_lightgcn_repeated_user_in_an_adjacency_file_is_not_read_as_pairs(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "0 10 11 12\n1 10 13\n0 14 15\n")  # user 0 written twice
    for read in (lambda: detect_lightgcn_layout(train), lambda: load_lightgcn(train)):
        with pytest.raises(
            DataError, match=r"train.txt, line 3, field 'user_id': user '0' is on an earlier line"
        ) as err:
            read()
        assert "layout='adjacency' or layout='pairs'" in str(err.value)
    t = load_lightgcn(train, layout="adjacency")
    assert t.interactions["item_id"].tolist() == ["10", "11", "12", "10", "13", "14", "15"]  # all 7 kept
    assert detect_lightgcn_layout(write(tmp_path / "once.txt", "0 10 11 12\n1 10 13\n")) == "adjacency"
    # read as pairs, a line of more than three fields is a bad row, not cut to its first two
    with pytest.raises(DataError, match=r"train.txt, line 1: expected 2 or 3 fields .*found 4"):
        load_lightgcn(train, layout="pairs")
    t = load_lightgcn(train, layout="pairs", on_error="skip")
    assert t.interactions[["user_id", "item_id"]].values.tolist() == [["1", "10"], ["0", "14"]]
    assert [(i.line, i.field) for i in t.issues] == [(1, None)]


@pytest.mark.parametrize(
    ("layout", "test", "social", "field"),
    [
        ("adjacency", "2 6\n01 7\n", "1 2\n", "user_id"),
        ("adjacency", "2 6\n1 05\n", "1 2\n", "item_id"),
        ("pairs", "2\t6\n1\t05\n", "1 2\n", "item_id"),
        ("adjacency", "2 6\n\u0661 7\n", "1 2\n", "user_id"),  # an Arabic-Indic digit one
        ("adjacency", "2 6\n", "1 2\n1 02\n", "friend_id"),
    ],
)
def test_lightgcn_ids_with_leading_zeros_are_refused(
    tmp_path: Path, layout: str, test: str, social: str, field: str
) -> None:
    train = write(tmp_path / "train.txt", "0 5 6\n1 5\n")
    paths = (write(tmp_path / "test.txt", test), write(tmp_path / "social.txt", social))
    with pytest.raises(DataError, match=rf"line 2, field '{field}': .*without leading zeros") as err:
        load_lightgcn(train, paths[0], layout=layout, social_path=paths[1])
    assert err.value.file == str(paths[0] if field != "friend_id" else paths[1])
    t = load_lightgcn(train, paths[0], layout=layout, social_path=paths[1], on_error="skip")
    assert set(t.users["user_id"]) <= {"0", "1", "2"} and [(i.line, i.field) for i in t.issues] == [(2, field)]


# ------------------------------------------------------------------ RDF prefixes and MIND entities a review found
@pytest.mark.parametrize(
    ("prefix", "iri"),
    [("schema", "http://schema.org/"), ("dc", "http://purl.org/dc/terms/"), ("foaf", "http://example.org/foaf#")],
)
def test_rdf_item_predicate_uses_the_prefix_the_file_declares(tmp_path: Path, prefix: str, iri: str) -> None:
    # rdflib binds schema: to https://schema.org/, dc: to DC elements and foaf: to FOAF by itself;
    # the file's own declaration is the one that must name the item predicate
    f = write(
        tmp_path / "kg.ttl",
        f'@prefix {prefix}: <{iri}> .\n<http://e/m1> {prefix}:identifier "1" ; {prefix}:creator <http://e/p1> .\n',
    )
    triples, literals, ie = load_rdf(f, item_predicate=f"{prefix}:identifier")
    assert ie.values.tolist() == [["1", "http://e/m1"]]
    assert literals.empty and triples["relation"].tolist() == [f"{iri}creator"]
    with pytest.raises(ConfigError, match=rf"declared: \['{prefix}'\]"):
        load_rdf(f, item_predicate="owl:identifier")  # known to rdflib, not declared in the file


def test_rdf_jsonld_item_predicate_uses_the_files_own_context(tmp_path: Path) -> None:
    # rdflib's JSON-LD parser binds its own schema: (https) next to the file's (http): the file's wins,
    # in an object context, a list of them, one in a local file the document names, and a nested one
    import json

    write(tmp_path / "ctx.jsonld", json.dumps({"@context": {"ex": "http://example.org/"}}))
    doc = {
        "@context": [
            "ctx.jsonld",
            {"schema": "http://schema.org/", "itemId": {"@id": "ex:itemId"}, "name": "http://schema.org/name"},
        ],
        "@graph": [
            {"@id": "ex:m1", "schema:identifier": "1", "itemId": "11", "name": "One"},
            {"@context": {"@vocab": "http://vocab.example/"}, "@id": "ex:m2", "code": "c2", "ex:itemId": "12"},
        ],
    }
    f = write(tmp_path / "kg.jsonld", json.dumps(doc))
    m1, m2 = "http://example.org/m1", "http://example.org/m2"
    for name, mapped in [
        ("schema:identifier", [["1", m1]]),
        ("itemId", [["11", m1], ["12", m2]]),  # a term of the @context names its IRI, like ex:itemId
        ("ex:itemId", [["11", m1], ["12", m2]]),
        ("name", [["One", m1]]),
        ("code", [["c2", m2]]),  # a bare name under the nested context's @vocab
        ("http://schema.org/identifier", [["1", m1]]),
    ]:
        _, _, ie = load_rdf(f, item_predicate=name)
        assert ie.values.tolist() == mapped, name
    with pytest.raises(ConfigError, match=r"prefix 'owl' is not declared in the file's @context") as err:
        load_rdf(f, item_predicate="owl:identifier")  # known to rdflib, not to the file
    assert "declared: ['ex', 'schema'], terms: ['itemId', 'name']" in str(err.value)


def test_rdf_jsonld_terms_that_name_no_predicate_or_two(tmp_path: Path) -> None:
    import json

    ctx = {
        "ex": "http://example.org/",
        "ns": "http://example.org/ns",  # no final / or #: a term, not a prefix
        "id": "@id",
        "parent": {"@reverse": "http://example.org/child"},
        "itemId": "ex:itemId",
    }
    doc = {
        "@context": ctx,
        "@id": "ex:m1",
        "itemId": "1",
        "ex:part": {"@context": {"itemId": "http://other.org/itemId"}, "@id": "ex:p1", "itemId": "2"},
    }
    f = write(tmp_path / "kg.jsonld", json.dumps(doc))
    for name, message in [
        ("ns:x", r"prefix 'ns' is not declared .*a term there, but not a prefix"),
        ("title", r"'title' is not a term of the file's @context, which sets no @vocab; declared: \['ex'\]"),
        ("id", r"'id' means '@id' .*not a predicate IRI"),
        ("parent", r"reverse property .*'http://example.org/child'"),
        ("itemId", r"means \['http://example.org/itemId', 'http://other.org/itemId'\] .*several of them used"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_rdf(f, item_predicate=name)
    # where only one of the two meanings is used by a statement, that one is the item predicate
    del doc["ex:part"]["itemId"]
    _, _, ie = load_rdf(write(tmp_path / "one.jsonld", json.dumps(doc)), item_predicate="itemId")
    assert ie.values.tolist() == [["1", "http://example.org/m1"]]


def test_rdf_jsonld_remote_context_is_not_fetched_for_the_item_predicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from urllib.error import URLError

    import rdflib.plugins.shared.jsonld.context as jsonld_context

    fetched: list[str] = []

    def fetch(url: str, *args: object, **kwargs: object) -> tuple[dict, None]:  # rdflib's parse, offline
        fetched.append(url)
        return {"@context": {"sch": "http://schema.org/"}}, None

    monkeypatch.setattr(jsonld_context, "source_to_json", fetch)
    doc = {
        "@context": ["https://contexts.example/ctx.jsonld", {"ex": "http://example.org/"}],
        "@id": "ex:m1",
        "ex:itemId": "1",
        "sch:identifier": "9",
    }
    f = write(tmp_path / "kg.jsonld", json.dumps(doc))
    _, literals, ie = load_rdf(f, item_predicate="ex:itemId")
    assert ie.values.tolist() == [["1", "http://example.org/m1"]] and len(fetched) == 1  # the parse's only
    with pytest.raises(ConfigError, match=r"prefix 'sch' .*\['https://contexts.example/ctx.jsonld'\] .*not read"):
        load_rdf(f, item_predicate="sch:identifier")
    _, _, ie = load_rdf(f, item_predicate="http://schema.org/identifier")
    assert ie.values.tolist() == [["9", "http://example.org/m1"]]

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(jsonld_context, "source_to_json", offline)
    with pytest.raises(DataError, match="remote @context") as err:
        load_rdf(f)
    assert err.value.file == str(f)


def test_mind_null_confidence_is_missing_and_a_bad_one_a_row_error(tmp_path: Path) -> None:
    import json

    from kg_builders.sources.mind import load_mind_news

    def row(news_id: str, confidence: object) -> str:
        ent = {"Label": "Barack Obama", "Type": "P", "WikidataId": "Q76", "Confidence": confidence}
        ents = json.dumps([{**ent, "OccurrenceOffsets": [0], "SurfaceForms": ["Obama"]}])
        return "\t".join([news_id, "news", "politics", "Obama speaks", "", "u", ents, "[]"])

    path = write(tmp_path / "news.tsv", f"{row('N1', None)}\n{row('N2', 0.9)}\n{row('N3', [1])}\n")
    with pytest.raises(DataError) as err:
        load_mind_news(path)
    assert err.value.line == 3 and err.value.field == "title_entities" and "Confidence [1]" in str(err.value)
    t = load_mind_news(path, on_error="skip")
    assert t.items["item_id"].tolist() == ["N1", "N2"]
    gold = t.gold_entities
    assert np.isnan(gold["confidence"].iloc[0]) and gold["confidence"].iloc[1] == 0.9
    assert [(i.line, i.field) for i in t.issues] == [(3, "title_entities")]
