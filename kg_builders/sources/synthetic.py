"""A deterministic synthetic world: users, items, text, tags, a knowledge graph, friends, images.

:func:`make_synthetic_world` draws every table a real source can produce from one latent
structure, so tests and benchmarks can check that each signal carries information:

- ``K = 8`` topics (science fiction, crime, romance, history, music, sport, nature, comedy).
  Each user has a taste vector and each item a topic vector on the K-simplex (Dirichlet draws).
- Interactions: each user ``u`` picks ``n_u`` distinct items (``n_u`` log-normal around the
  requested mean, so degrees spread like real data) by successive sampling from
  ``softmax_i(beta * taste_u . topic_i + log pop_i)`` with Zipf-like item popularity ``pop``.
  Timestamps are integers (seconds, 2015-2019); ratings 1-5 rise with the affinity
  ``taste_u . topic_i``.
- Items: titles and descriptions from templates naming PEOPLE, PLACES and ORGANISATIONS of a
  fixed vocabulary (:func:`synthetic_vocabulary`) tied to the item's topics, so a gazetteer or an
  entity extractor can find them; ``gold_entities`` gives each mention with its offset. Genres
  are the item's main topics.
- Tags: about a fifth of the interactions carry a tag of one of the item's topics.
- External knowledge graph: ``item_entities`` maps about 90 % of the items to entities; the
  triples link them to their director, star, place, producer and genres, and link the vocabulary
  to genres, places and organisations.
- Social edges between users of similar taste (both directions, as HetRec stores them).
- Images: ``[image_size, image_size, 3]`` uint8 arrays whose colour mixes the item's topic
  colours, for about 80 % of the items.

Everything is drawn from ``np.random.default_rng(seed)`` (one spawned stream per component, so
e.g. ``with_images`` does not change the other tables); nothing seeds a global generator.
Sampling is vectorised (batches of users, no Python loop per interaction): one million
interactions take seconds and well under a gigabyte.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError
from kg_builders.tables import Tables

logger = logging.getLogger(__name__)

#: start and end of the interaction timestamps (2015-01-01 and 2020-01-01, UTC seconds)
T_START = 1_420_070_400
T_END = 1_577_836_800
#: how sharply users prefer items of their topics (the softmax inverse temperature)
AFFINITY_BETA = 8.0
#: item popularity pop_i ~ rank_i ** -POPULARITY_EXPONENT
POPULARITY_EXPONENT = 0.8
TASTE_ALPHA = 0.3
TOPIC_ALPHA = 0.2
TAG_RATE = 0.2
IMAGE_FRACTION = 0.8
ENTITY_FRACTION = 0.9


@dataclass(frozen=True)
class _Topic:
    slug: str
    genre: str
    kind: str  # the adjective used in descriptions
    colour: tuple[int, int, int]
    people: tuple[str, ...]
    places: tuple[str, ...]
    organisations: tuple[str, ...]
    tags: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    themes: tuple[str, ...]


_TOPICS: tuple[_Topic, ...] = (
    _Topic(
        "science_fiction",
        "Science Fiction",
        "science fiction",
        (45, 70, 200),
        ("Orla Venmark", "Tobias Quell", "Imani Starrow", "Keiran Vostrikov", "Dario Nightfield", "Selene Marsh"),
        ("Port Calder", "Ostara Station", "Vellmoor"),
        ("Helix Dynamics", "Orbital Union", "Farpoint Studios"),
        ("space", "aliens", "robots", "time travel", "dystopia"),
        ("Horizon", "Orbit", "Nebula", "Signal", "Colony"),
        ("Distant", "Silent", "Last"),
        ("first contact", "a lost colony", "artificial minds", "a time loop", "a failing starship"),
    ),
    _Topic(
        "crime",
        "Crime",
        "crime",
        (70, 70, 85),
        ("Marcus Greaves", "Delia Crowhurst", "Vincent Talbrook", "Rosa Marchetti", "Silas Dunmore", "Nadia Korsakova"),
        ("Harrowgate", "Blackwater Bay", "Santa Corva"),
        ("Ironbridge Pictures", "Harlow Films", "Meridian Police Bureau"),
        ("heist", "detective", "mafia", "noir", "twist ending"),
        ("Alibi", "Verdict", "Ledger", "Shadow", "Witness"),
        ("Cold", "Crooked", "Midnight"),
        ("a heist gone wrong", "a cold case", "a crooked judge", "a stolen fortune", "a double cross"),
    ),
    _Topic(
        "romance",
        "Romance",
        "romantic",
        (220, 70, 130),
        ("Juliette Ambrose", "Theo Lindqvist", "Amara Okafor", "Felix Beaumont", "Clara Wexley", "Rafael Duarte"),
        ("Bellmare", "Saint-Avril", "Lake Corran"),
        ("Rosewood Pictures", "Amber Lantern Films", "Velvet Sky Studios"),
        ("love story", "wedding", "heartbreak", "romantic", "feel-good"),
        ("Promise", "Letters", "Summer", "Heart", "Waltz"),
        ("Sweet", "Endless", "Tender"),
        ("second chances", "a summer wedding", "lost love letters", "an unlikely friendship", "a broken engagement"),
    ),
    _Topic(
        "history",
        "History",
        "historical",
        (150, 105, 55),
        ("Edmund Ashcroft", "Isolde Varga", "Casimir Drozd", "Helena Marwick", "Baltasar Orsini", "Wilhelmina Strand"),
        ("Kingsreach", "Old Valdoria", "Fort Aldwyn"),
        ("Crown Archive Films", "Ironquill Productions", "Royal Chronicle Society"),
        ("war", "period drama", "medieval", "biography", "revolution"),
        ("Crown", "Empire", "Siege", "Banner", "Chronicle"),
        ("Iron", "Ancient", "Fallen"),
        ("a forgotten war", "a fallen dynasty", "a peasant revolt", "an exiled queen", "a royal succession"),
    ),
    _Topic(
        "musical",
        "Musical",
        "musical",
        (235, 185, 35),
        ("Miles Okonkwo", "Sadie Lark", "Celeste Moreau", "Ruben Castellanos", "Ivy Tremaine", "Otis Bellamy"),
        ("New Harmony", "Calypso Heights", "Riverside Quarter"),
        ("Gold Reel Records", "Silver Stave Studios", "Harmonia Orchestra"),
        ("soundtrack", "jazz", "concert", "dance", "rock band"),
        ("Melody", "Encore", "Rhythm", "Ballad", "Chorus"),
        ("Golden", "Electric", "Blue"),
        ("a rock band on tour", "a jazz legend", "a talent contest", "a lost song", "a touring orchestra"),
    ),
    _Topic(
        "sport",
        "Sport",
        "sports",
        (45, 165, 70),
        ("Dexter Mwangi", "Kasia Nowicka", "Brody Callahan", "Yara Haddad", "Leon Fairbairn", "Tomas Rietveld"),
        ("Eastbrook", "Marlow Park", "Red Hill Stadium"),
        ("Northstar Athletics", "Golden Lions Club", "Victory Lane Films"),
        ("football", "boxing", "underdog", "olympics", "coach"),
        ("Match", "Season", "Champion", "Comeback", "Trophy"),
        ("Final", "Great", "Winning"),
        ("an underdog team", "a boxing comeback", "an Olympic dream", "a retired coach", "a cup final"),
    ),
    _Topic(
        "documentary",
        "Documentary",
        "nature",
        (25, 140, 140),
        ("Ingrid Solberg", "Ravi Chandrasekar", "Maeve Donnelly", "Jasper Holloway", "Anouk Verhoeven", "Kofi Asante"),
        ("Emerald Fjord", "Saltmarsh Reserve", "Mount Tavish"),
        ("Wildlight Films", "Green Atlas Foundation", "Deepwater Institute"),
        ("wildlife", "ocean", "climate", "expedition", "scenery"),
        ("Tides", "Wilderness", "Migration", "Glacier", "Canopy"),
        ("Wild", "Frozen", "Hidden"),
        ("whale migration", "a melting glacier", "the rainforest canopy", "wolves in winter", "a coral reef"),
    ),
    _Topic(
        "comedy",
        "Comedy",
        "comedy",
        (240, 120, 35),
        ("Gus Pemberton", "Dottie Fairweather", "Ned Huxtable", "Priya Malhotra", "Barney Quill", "Lottie Brambles"),
        ("Little Puddleton", "Sunnyvale Flats", "Port Mirth"),
        ("Giggleworks Studios", "Merry Fox Pictures", "Banana Peel Productions"),
        ("funny", "satire", "parody", "slapstick", "quirky"),
        ("Mix-Up", "Vacation", "Neighbours", "Caper", "Fiasco"),
        ("Big", "Crazy", "Perfect"),
        ("a chaotic holiday", "noisy neighbours", "a botched robbery", "a wedding mix-up", "a family reunion"),
    ),
)
NUM_TOPICS = len(_TOPICS)
#: entity types of :func:`synthetic_vocabulary` (and of ``gold_entities.entity_type``)
ENTITY_TYPES = ("person", "place", "organisation")

# Templates: "{slot}" marks a mention. Title slots: adj, noun, place. Text slots: star, director,
# place, org (entities) and kind, theme (plain words).
_TITLE_TEMPLATES = ("The {adj} {noun}", "{noun} of {place}", "{adj} {noun} in {place}", "{adj} {noun}")
_TEXT_TEMPLATES = (
    "{star} stars in this {kind} story set in {place}. Directed by {director} and produced by {org}.",
    "In {place}, {star} uncovers what {org} has been hiding. A {kind} film by {director} about {theme}.",
    "{director} directs {star} in a {kind} tale about {theme}, filmed in {place} for {org}.",
    "Produced by {org}, this {kind} feature follows {star} across {place}; {director} directs.",
)
_SLOT = re.compile(r"\{(\w+)\}")
_ENTITY_SLOTS = {"star": "person", "director": "person", "place": "place", "org": "organisation"}
_ROMAN = ("", " II", " III", " IV", " V", " VI", " VII", " VIII", " IX", " X")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def synthetic_vocabulary() -> list[tuple[str, str]]:
    """The people, places and organisations the synthetic items mention, for a gazetteer.

    Returns:
        ``(name, type)`` pairs, ``type`` in ``("person", "place", "organisation")``; names are
        unique and none contains another.
    """
    out: list[tuple[str, str]] = []
    for t in _TOPICS:
        out += [(n, "person") for n in t.people]
        out += [(n, "place") for n in t.places]
        out += [(n, "organisation") for n in t.organisations]
    return out


def kg_entity_id(name: str, entity_type: str) -> str:
    """The knowledge-graph id of a vocabulary entity, e.g. ``"person:sadie_lark"``."""
    cached = _ENTITY_IDS.get((name, entity_type))
    return cached if cached is not None else f"{entity_type}:{_slug(name)}"


_GENRE_IDS = {t.genre: f"genre:{_slug(t.genre)}" for t in _TOPICS}
_ENTITY_IDS = {(n, t): f"{t}:{_slug(n)}" for n, t in synthetic_vocabulary()}


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` [N, C] (rows sum to 1) -> [N] int64."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((u >= cdf).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def _degrees(rng: np.random.Generator, num_users: int, mean: float, num_items: int) -> np.ndarray:
    """Per-user interaction counts [num_users]: log-normal (sigma 0.9) rescaled to ``mean``."""
    raw = rng.lognormal(0.0, 0.9, num_users)
    hi = num_items
    lo = min(5, hi, max(1, int(mean)))
    n = np.rint(raw * (mean / raw.mean()))
    return np.clip(n, lo, hi).astype(np.int64)


def _sample_interactions(
    rng: np.random.Generator,
    taste: np.ndarray,
    topics: np.ndarray,
    log_pop: np.ndarray,
    degrees: np.ndarray,
    *,
    max_cdf_entries: int = 1 << 23,
) -> tuple[np.ndarray, np.ndarray]:
    """Successive sampling without replacement from ``softmax(beta * taste . topic + log_pop)``.

    Exact, vectorised, and O(interactions) beyond a fixed budget of dense rows: users are assigned
    to ``C`` centres (users themselves; every user is a centre when ``C * num_items`` is small).
    Item ``i`` is proposed from the centre's softmax and accepted with probability
    ``exp(beta * ((taste_u - taste_c) . topic_i - delta_u))``, where
    ``delta_u = max_k (taste_uk - taste_ck)`` bounds ``(taste_u - taste_c) . topic_i`` because
    topic vectors lie on the simplex, so accepted draws follow the user's own softmax. Keeping
    each user's first ``n_u`` distinct draws is sampling without replacement; users still short
    after a few rounds (those who want most of the items) finish with Gumbel top-k over their
    unseen items, which is exact too.

    Args:
        taste: [num_users, K] user taste vectors.
        topics: [num_items, K] item topic vectors.
        log_pop: [num_items] log popularity.
        degrees: [num_users] distinct items to draw per user (at most ``num_items``).
        max_cdf_entries: the budget ``C * num_items`` of the centres' CDFs (8 bytes each).

    Returns:
        ``(user_idx, item_idx)``, each [sum(degrees)], grouped by user.
    """
    num_users = taste.shape[0]
    num_items = topics.shape[0]
    num_centres = max(1, min(num_users, max_cdf_entries // num_items))
    if num_centres == num_users:
        centres = np.arange(num_users)
        assign = np.arange(num_users)
    else:
        centres = np.sort(rng.choice(num_users, num_centres, replace=False))
        assign = np.empty(num_users, np.int64)
        for lo in range(0, num_users, 4096):  # nearest centre by the bound delta
            gap = taste[lo : lo + 4096, None, :] - taste[None, centres, :]  # [b, C, K]
            assign[lo : lo + 4096] = gap.max(axis=2).argmin(axis=1)
    delta = (taste - taste[centres[assign]]).max(axis=1)  # [U] >= 0
    logits = AFFINITY_BETA * taste[centres] @ topics.T + log_pop  # [C, I]
    logits -= logits.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(logits), axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(num_centres, dtype=np.float64)[:, None]  # row c spans [c, c + 1)
    flat = cdf.ravel()
    del logits, cdf

    out_u: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    bounds = np.searchsorted(np.cumsum(degrees), np.arange(1 << 19, int(degrees.sum()), 1 << 19), side="right")
    first_acceptance = 0.5  # of a chunk's first round; later rounds see harder users
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, num_users], strict=True):
        if hi <= lo:
            continue
        want = degrees[lo:hi]
        need = want.copy()
        kept_u = np.empty(0, np.int64)
        kept_i = np.empty(0, np.int64)
        acceptance = first_acceptance
        for round_ in range(8):
            short = np.flatnonzero(need > 0)
            if short.size == 0:
                break
            draw_u = np.repeat(short, np.ceil(need[short] * 1.3 / acceptance).astype(np.int64) + 2)
            user = draw_u + lo
            c = assign[user]
            pos = np.searchsorted(flat, c + rng.random(draw_u.size), side="right")
            draw_i = np.clip(pos - c * num_items, 0, num_items - 1)
            shift = np.einsum("nk,nk->n", taste[user] - taste[centres[c]], topics[draw_i]) - delta[user]
            ok = rng.random(draw_u.size) < np.exp(AFFINITY_BETA * np.minimum(shift, 0.0))
            acceptance = max(0.05, float(ok.mean()))
            if round_ == 0:
                first_acceptance = acceptance
            kept_u, kept_i = _first_distinct(
                np.concatenate([kept_u, draw_u[ok]]), np.concatenate([kept_i, draw_i[ok]]), want, num_items
            )
            need = want - np.bincount(kept_u, minlength=hi - lo)
        short = np.flatnonzero(need > 0)
        if short.size:
            fu, fi = _gumbel_finish(rng, lo, short, need[short], kept_u, kept_i, taste, topics, log_pop)
            kept_u = np.concatenate([kept_u, fu])
            kept_i = np.concatenate([kept_i, fi])
        order = np.argsort(kept_u, kind="stable")
        out_u.append(kept_u[order] + lo)
        out_i.append(kept_i[order])
    return np.concatenate(out_u), np.concatenate(out_i)


def _first_distinct(u: np.ndarray, i: np.ndarray, degrees: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each (u, i) pair's first occurrence, then each user's first ``degrees[u]`` pairs."""
    code = u * num_items + i
    _, first = np.unique(code, return_index=True)
    first.sort()  # draw order
    u, i = u[first], i[first]
    order = np.argsort(u, kind="stable")
    u, i = u[order], i[order]
    group_start = np.searchsorted(u, u, side="left")
    rank = np.arange(u.size) - group_start
    keep = rank < degrees[u]
    return u[keep], i[keep]


def _gumbel_finish(
    rng: np.random.Generator,
    offset: int,
    short: np.ndarray,
    need: np.ndarray,
    kept_u: np.ndarray,
    kept_i: np.ndarray,
    taste: np.ndarray,
    topics: np.ndarray,
    log_pop: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``need`` items by ``logit + Gumbel`` among the unseen items of the ``short`` users.

    ``short`` and ``kept_u`` are indices within the batch starting at user ``offset``.
    """
    keys = AFFINITY_BETA * taste[short + offset] @ topics.T + log_pop  # [S, I]
    keys -= np.log(-np.log(rng.random(keys.shape)))
    rows = np.searchsorted(short, kept_u)
    seen = (rows < short.size) & (short[np.minimum(rows, short.size - 1)] == kept_u)
    keys[rows[seen], kept_i[seen]] = -np.inf
    fu: list[np.ndarray] = []
    fi: list[np.ndarray] = []
    for r, n in enumerate(need):  # a few users who want most of the items
        fu.append(np.full(n, short[r], np.int64))
        fi.append(np.argpartition(-keys[r], n - 1)[:n].astype(np.int64))
    return np.concatenate(fu), np.concatenate(fi)


def _fill(template: str, values: dict[str, str], types: dict[str, str]) -> tuple[str, list[tuple[str, str, int]]]:
    """Fill ``template``; return the text and its entity mentions ``(surface, type, offset)``."""
    parts: list[str] = []
    mentions: list[tuple[str, str, int]] = []
    pos = 0
    length = 0
    for m in _SLOT.finditer(template):
        literal = template[pos : m.start()]
        parts.append(literal)
        length += len(literal)
        slot = m.group(1)
        value = values[slot]
        if slot in types:
            mentions.append((value, types[slot], length))
        parts.append(value)
        length += len(value)
        pos = m.end()
    parts.append(template[pos:])
    return "".join(parts), mentions


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


def make_synthetic_world(
    *,
    num_users: int = 200,
    num_items: int = 300,
    interactions_per_user: float = 20,
    num_tags: int = 40,
    image_size: int = 8,
    seed: int = 0,
    with_images: bool = True,
) -> Tables:
    """Generate a synthetic recommendation world; the same arguments give identical tables.

    Args:
        num_users: users, ids ``"u0"``, ``"u1"``, ...
        num_items: items, ids ``"i0"``, ``"i1"``, ...
        interactions_per_user: the mean number of distinct items per user before clipping (the
            spread is log-normal; each user gets at least ``min(5, interactions_per_user)`` and at
            most ``num_items``, so the realised mean is above it for small values, about 6.8 for 5,
            and below it near ``num_items``, about 29 for 40 of 50 items).
        num_tags: distinct tags (tied to topics; 0 for no ``tag_assignments``).
        image_size: the side of the item images ``[image_size, image_size, 3]``.
        seed: seeds ``np.random.default_rng``.
        with_images: generate ``images`` (for about 80 % of items).

    Returns:
        :class:`~kg_builders.tables.Tables` with ``interactions`` (user_id, item_id, rating 1-5
        float, timestamp int; each pair once, sorted by user and time), ``items`` (item_id, title,
        year, genres, text), ``users``, ``tag_assignments`` (item_id, tag, user_id, timestamp),
        ``triples`` and ``item_entities`` (the external knowledge graph), ``social`` (both
        directions of each friendship), ``gold_entities`` (item_id, field, surface, entity_type,
        offset, entity_id: every vocabulary mention in titles and texts) and ``images``.

    Raises:
        ConfigError: a count is out of range.
    """
    num_users = _check_int("num_users", num_users, 1)
    num_items = _check_int("num_items", num_items, 2)
    num_tags = _check_int("num_tags", num_tags, 0)
    image_size = _check_int("image_size", image_size, 1)
    _check_int("seed", seed, 0)
    if (
        isinstance(interactions_per_user, bool)
        or not isinstance(interactions_per_user, int | float | np.integer | np.floating)
        or not math.isfinite(interactions_per_user)
        or not 1 <= interactions_per_user <= num_items
    ):
        raise ConfigError(
            f"interactions_per_user must be a number in [1, num_items={num_items}], got {interactions_per_user!r}"
        )
    rng_latent, rng_inter, rng_text, rng_tags, rng_social, rng_images = np.random.default_rng(seed).spawn(6)
    k = NUM_TOPICS

    # latent structure
    taste = rng_latent.dirichlet(np.full(k, TASTE_ALPHA), num_users)  # [U, K]
    topics = rng_latent.dirichlet(np.full(k, TOPIC_ALPHA), num_items)  # [I, K]
    rank = rng_latent.permutation(num_items) + 1
    log_pop = -POPULARITY_EXPONENT * np.log(rank.astype(np.float64))
    user_ids = _ids("u", num_users)
    item_ids = _ids("i", num_items)

    # interactions
    degrees = _degrees(rng_inter, num_users, float(interactions_per_user), num_items)
    iu, ii = _sample_interactions(rng_inter, taste, topics, log_pop, degrees)
    affinity = np.einsum("nk,nk->n", taste[iu], topics[ii])
    z = (affinity - affinity.mean()) / (affinity.std() + 1e-12)
    user_bias = rng_inter.normal(0.0, 0.4, num_users)
    rating = np.clip(np.rint(3.4 + 0.9 * z + user_bias[iu] + rng_inter.normal(0.0, 0.7, iu.size)), 1, 5)
    start = rng_inter.integers(T_START, T_END - 30 * 86_400, num_users)
    span = np.minimum(rng_inter.exponential(200 * 86_400, num_users).astype(np.int64) + 86_400, T_END - start)
    timestamp = start[iu] + (rng_inter.random(iu.size) * span[iu]).astype(np.int64)
    order = np.lexsort((ii, timestamp, iu))
    iu, ii, rating, timestamp = iu[order], ii[order], rating[order], timestamp[order]
    interactions = pd.DataFrame(
        {
            "user_id": user_ids[iu],
            "item_id": item_ids[ii],
            "rating": rating.astype(np.float64),
            "timestamp": timestamp.astype(np.int64),
        }
    )

    items, gold, item_entities, triples = _items_and_knowledge(rng_text, topics, item_ids)
    tag_assignments = _tags(rng_tags, num_tags, topics, iu, ii, timestamp, user_ids, item_ids)
    social = _social(rng_social, taste, user_ids)
    images = _images(rng_images, topics, item_ids, image_size) if with_images else None
    tables = Tables(
        interactions=interactions,
        items=items,
        users=pd.DataFrame({"user_id": user_ids}),
        tag_assignments=tag_assignments,
        triples=triples,
        item_entities=item_entities,
        social=social,
        gold_entities=gold,
        images=images,
        source=f"synthetic(seed={seed})",
    )
    logger.info("synthetic world (seed %d): %s", seed, tables.counts())
    return tables


def _items_and_knowledge(
    rng: np.random.Generator, topics: np.ndarray, item_ids: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items (titles, texts, genres, years), their gold mentions, and the external KG."""
    num_items = topics.shape[0]
    slots = _categorical(rng, np.repeat(topics, 5, axis=0)).reshape(num_items, 5)  # director, star, place, org, title
    director_j = rng.integers(0, 6, num_items)
    star_j = (director_j + rng.integers(1, 6, num_items)) % 6  # never the director
    place_j = rng.integers(0, 3, num_items)
    org_j = rng.integers(0, 3, num_items)
    noun_j = rng.integers(0, 5, num_items)
    adj_j = rng.integers(0, 3, num_items)
    theme_j = rng.integers(0, 5, num_items)
    title_t = rng.integers(0, len(_TITLE_TEMPLATES), num_items)
    text_t = rng.integers(0, len(_TEXT_TEMPLATES), num_items)
    year = np.clip(2019 - np.floor(rng.exponential(12.0, num_items)), 1930, 2019).astype(np.int64)
    mapped = rng.random(num_items) < ENTITY_FRACTION
    main = topics.argmax(axis=1)
    genre_order = np.argsort(-topics, axis=1, kind="stable")  # genres: the main topic and any >= 0.25
    strong = np.take_along_axis(topics, genre_order, axis=1) >= 0.25
    genre_order = genre_order.tolist()

    titles: list[str] = []
    texts: list[str] = []
    genres: list[tuple[str, ...]] = []
    gold_rows: list[tuple[str, str, str, str, int, str]] = []
    triple_rows: list[tuple[str, str, str]] = []
    entity_rows: list[tuple[str, str]] = []
    seen_titles: dict[str, int] = {}
    for n in range(num_items):
        d_t, s_t, p_t, o_t, w_t = (_TOPICS[int(x)] for x in slots[n])
        director = d_t.people[director_j[n]]
        star = s_t.people[star_j[n]]  # same topic: star_j != director_j; other topics: other names
        place = p_t.places[place_j[n]]
        org = o_t.organisations[org_j[n]]
        m_t = _TOPICS[int(main[n])]
        values = {
            "adj": w_t.adjectives[adj_j[n]],
            "noun": w_t.nouns[noun_j[n]],
            "place": place,
            "star": star,
            "director": director,
            "org": org,
            "kind": m_t.kind,
            "theme": m_t.themes[theme_j[n]],
        }
        title, title_mentions = _fill(_TITLE_TEMPLATES[title_t[n]], values, {"place": "place"})
        count = seen_titles.get(title, 0)
        seen_titles[title] = count + 1
        if count:
            title += _ROMAN[count] if count < len(_ROMAN) else f" ({count + 1})"
        text, text_mentions = _fill(_TEXT_TEMPLATES[text_t[n]], values, _ENTITY_SLOTS)
        item_id = item_ids[n]
        titles.append(title)
        texts.append(text)
        genre = tuple(_TOPICS[t].genre for r, t in enumerate(genre_order[n]) if r == 0 or strong[n, r])
        genres.append(genre)
        for field, mentions in (("title", title_mentions), ("text", text_mentions)):
            for surface, etype, offset in mentions:
                gold_rows.append((item_id, field, surface, etype, offset, kg_entity_id(surface, etype)))
        if mapped[n]:
            head = f"item:{item_id}"
            entity_rows.append((item_id, head))
            triple_rows += [
                (head, "directed_by", kg_entity_id(director, "person")),
                (head, "starring", kg_entity_id(star, "person")),
                (head, "located_in", kg_entity_id(place, "place")),
                (head, "produced_by", kg_entity_id(org, "organisation")),
            ]
            triple_rows += [(head, "has_genre", _GENRE_IDS[g]) for g in genre]
    triple_rows += _vocabulary_triples()

    items = pd.DataFrame({"item_id": item_ids, "title": titles, "year": year, "genres": genres, "text": texts})
    gold = pd.DataFrame(gold_rows, columns=["item_id", "field", "surface", "entity_type", "offset", "entity_id"])
    gold["offset"] = gold["offset"].astype(np.int64)
    item_entities = pd.DataFrame(entity_rows, columns=["item_id", "entity_id"])
    triples = pd.DataFrame(triple_rows, columns=["head", "relation", "tail"]).drop_duplicates(ignore_index=True)
    return items, gold, item_entities, triples


def _vocabulary_triples() -> list[tuple[str, str, str]]:
    """Facts about the vocabulary: birthplaces, employers, locations, genres."""
    rows: list[tuple[str, str, str]] = []
    for t in _TOPICS:
        genre = f"genre:{_slug(t.genre)}"
        for j, person in enumerate(t.people):
            pid = kg_entity_id(person, "person")
            rows.append((pid, "born_in", kg_entity_id(t.places[j % len(t.places)], "place")))
            rows.append((pid, "works_for", kg_entity_id(t.organisations[j % len(t.organisations)], "organisation")))
            rows.append((pid, "known_for", genre))
        for j, org in enumerate(t.organisations):
            oid = kg_entity_id(org, "organisation")
            rows.append((oid, "based_in", kg_entity_id(t.places[j % len(t.places)], "place")))
            rows.append((oid, "specialises_in", genre))
    return rows


def _tag_name(t: int) -> str:
    topic, j = _TOPICS[t % NUM_TOPICS], t // NUM_TOPICS
    word = topic.tags[j % len(topic.tags)]
    return word if j < len(topic.tags) else f"{word} {j // len(topic.tags) + 1}"


def _tags(
    rng: np.random.Generator,
    num_tags: int,
    topics: np.ndarray,
    iu: np.ndarray,
    ii: np.ndarray,
    timestamp: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> pd.DataFrame | None:
    """Tags on about ``TAG_RATE`` of the interactions, mostly of a topic of the item."""
    if num_tags == 0:
        return None
    k = NUM_TOPICS
    names = np.array([_tag_name(t) for t in range(num_tags)], dtype=object)
    per_topic = np.bincount(np.arange(num_tags) % k, minlength=k)
    chosen = np.flatnonzero(rng.random(iu.size) < TAG_RATE)
    u, i = iu[chosen], ii[chosen]
    topic = _categorical(rng, topics[i])
    j = np.floor(rng.random(chosen.size) * np.maximum(per_topic[topic], 1)).astype(np.int64)
    tag = topic + j * k
    random_tag = (rng.random(chosen.size) < 0.1) | (per_topic[topic] == 0)
    tag[random_tag] = rng.integers(0, num_tags, int(random_tag.sum()))
    ts = timestamp[chosen] + rng.integers(0, 3600, chosen.size)
    frame = pd.DataFrame({"u": u, "i": i, "t": tag, "ts": ts}).drop_duplicates(["u", "i", "t"])
    return pd.DataFrame(
        {
            "item_id": item_ids[frame["i"].to_numpy()],
            "tag": names[frame["t"].to_numpy()],
            "user_id": user_ids[frame["u"].to_numpy()],
            "timestamp": frame["ts"].to_numpy(np.int64),
        }
    )


def _social(rng: np.random.Generator, taste: np.ndarray, user_ids: np.ndarray) -> pd.DataFrame:
    """Friendships between users of similar taste; both directions of each are listed."""
    num_users = taste.shape[0]
    if num_users < 2:
        return pd.DataFrame({"user_id": pd.Series([], dtype=str), "friend_id": pd.Series([], dtype=str)})
    c = min(num_users - 1, 100)
    cand = rng.integers(0, num_users - 1, (num_users, c))
    cand += cand >= np.arange(num_users)[:, None]  # skip self
    unit = taste / np.linalg.norm(taste, axis=1, keepdims=True)
    sim = np.einsum("uk,uck->uc", unit, unit[cand])
    keys = 20.0 * sim - np.log(-np.log(rng.random(sim.shape)))
    count = np.clip(np.rint(rng.lognormal(np.log(3.0), 0.8, num_users)), 1, c).astype(np.int64)
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    src, col = np.nonzero(rank < count[:, None])
    dst = cand[src, col]
    a, b = np.concatenate([src, dst]), np.concatenate([dst, src])
    pairs = np.unique(a * num_users + b)
    a, b = pairs // num_users, pairs % num_users
    return pd.DataFrame({"user_id": user_ids[a], "friend_id": user_ids[b]})


def _images(rng: np.random.Generator, topics: np.ndarray, item_ids: np.ndarray, size: int) -> pd.DataFrame:
    """``[size, size, 3]`` uint8 images coloured by topic, for ``IMAGE_FRACTION`` of the items."""
    num_items = topics.shape[0]
    count = int(round(IMAGE_FRACTION * num_items))
    which = np.sort(rng.permutation(num_items)[:count])
    palette = np.array([t.colour for t in _TOPICS], dtype=np.float64)  # [K, 3]
    colour = topics[which] @ palette  # [N, 3]
    shade = np.linspace(0.75, 1.15, size)[None, :, None, None]  # vertical gradient
    pixels = colour[:, None, None, :] * shade + rng.normal(0.0, 8.0, (count, size, size, 3))
    arrays = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return pd.DataFrame({"item_id": item_ids[which], "image": list(arrays)})
