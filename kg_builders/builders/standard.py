"""The standard recipe: which builders to run for the tables a source produced."""

from __future__ import annotations

from kg_builders.builders.attributes import ItemAttributeBuilder
from kg_builders.builders.interactions import InteractionBuilder
from kg_builders.builders.knowledge import KnowledgeBuilder
from kg_builders.builders.social import SocialBuilder
from kg_builders.builders.tags import TagBuilder
from kg_builders.fragment import Builder
from kg_builders.tables import Tables


def standard_builders(
    tables: Tables,
    *,
    weight: str = "rating",
    min_rating: float | None = None,
    tags: bool = True,
    min_tag_count: int = 1,
    genres: bool = True,
    knowledge: bool = True,
    unknown_kg_items: str = "drop",
    social: bool = True,
    entities: Builder | None = None,
) -> list[Builder]:
    """The builders that apply to ``tables``: each optional part runs only when its table exists.

    Args:
        tables: the (training) tables.
        weight, min_rating: :class:`InteractionBuilder` settings.
        tags, min_tag_count: add tag nodes (when there are tag assignments).
        genres: add genre entities (when items have a ``genres`` column).
        knowledge, unknown_kg_items: add external KG triples (when there are triples).
        social: add user-user edges (when there is a social table).
        entities: an entity builder (e.g. :class:`~kg_builders.builders.entities.EntityBuilder`)
            to extract entities from item text.
    """
    out: list[Builder] = [InteractionBuilder(weight=weight, min_rating=min_rating)]
    if tags and tables.tag_assignments is not None and len(tables.tag_assignments):
        out.append(TagBuilder(min_count=min_tag_count))
    if genres and tables.items is not None and "genres" in tables.items.columns:
        out.append(ItemAttributeBuilder())
    if entities is not None:
        out.append(entities)
    if knowledge and tables.triples is not None:
        out.append(KnowledgeBuilder(unknown_items=unknown_kg_items))
    if social and tables.social is not None:
        out.append(SocialBuilder())
    return out
