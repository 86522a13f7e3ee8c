"""Text analysis shared by ingest and the query builder: one normalization, one segmentation.

Ingest writes tokens with :meth:`Tokenizer.field_text` and brands with
:func:`normalize_brand`; the query builder reads queries with the same code, so
the two sides of the index always agree.
"""
from .normalize import fold_key, has_cjk, is_cjk, normalize_text
from .tokenize import Tokenizer
from .vocabulary import (BRAND_MENTION, CATEGORY_MENTION, AliasError, AliasTable, Mention, Mentions, Vocabulary, category_ancestors,
                         category_leaf_name, category_parent, normalize_brand)

__all__ = ["normalize_text", "fold_key", "is_cjk", "has_cjk", "Tokenizer", "AliasTable", "AliasError",
           "Mention", "Mentions", "Vocabulary", "normalize_brand", "category_ancestors", "category_leaf_name",
           "category_parent", "BRAND_MENTION", "CATEGORY_MENTION"]
