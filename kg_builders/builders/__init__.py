"""Pure builders: tables -> graph fragments, and node features for a built graph.

Heavy libraries (transformers, spaCy) are imported only when an encoder or extractor runs.
"""

from kg_builders.builders.attributes import ItemAttributeBuilder
from kg_builders.builders.entities import (
    EntityBuilder,
    GazetteerExtractor,
    Mention,
    SpacyExtractor,
    TransformersExtractor,
    entity_id,
    normalise_entity_name,
)
from kg_builders.builders.feature_cache import CacheStats, FeatureCache
from kg_builders.builders.image_features import ImageEncoder, ImageEncodeResult, ImageFeatureBuilder, load_image_vectors
from kg_builders.builders.interactions import InteractionBuilder
from kg_builders.builders.knowledge import KnowledgeBuilder
from kg_builders.builders.llm_profiles import ProfileStats, ProfileWriter
from kg_builders.builders.node_text import NodeTextTemplates, node_texts
from kg_builders.builders.social import SocialBuilder
from kg_builders.builders.standard import standard_builders
from kg_builders.builders.tags import TagBuilder
from kg_builders.builders.text_encoder import EncodeResult, TextEncoder
from kg_builders.builders.text_features import FeatureReport, TextFeatureBuilder

__all__ = [
    "CacheStats",
    "EncodeResult",
    "EntityBuilder",
    "FeatureCache",
    "FeatureReport",
    "GazetteerExtractor",
    "ImageEncodeResult",
    "ImageEncoder",
    "ImageFeatureBuilder",
    "InteractionBuilder",
    "ItemAttributeBuilder",
    "KnowledgeBuilder",
    "Mention",
    "NodeTextTemplates",
    "ProfileStats",
    "ProfileWriter",
    "SocialBuilder",
    "SpacyExtractor",
    "TagBuilder",
    "TextEncoder",
    "TextFeatureBuilder",
    "TransformersExtractor",
    "entity_id",
    "load_image_vectors",
    "node_texts",
    "normalise_entity_name",
    "standard_builders",
]
