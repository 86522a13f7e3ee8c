"""The one place that names the product index's fields.

Ingest writes documents with these names and the query builder reads them;
neither spells a field name as a string literal of its own.  The JSON mapping
beside this file uses the same names, and ``tests/test_mappings.py`` checks
that the two agree.
"""

# identity and bookkeeping
ID = "id"
CONTENT_HASH = "content_hash"

# text: jieba-tokenized, space-joined, indexed with the whitespace analyzer
TITLE = "title"
DESCRIPTION = "description"
BRAND_TEXT = "brand_text"
CATEGORY_TEXT = "category_text"
OCR_TEXT = "ocr_text"

# raw copies for display and exact matching
TITLE_RAW = "title_raw"
DESCRIPTION_RAW = "description_raw"

# facets
BRAND = "brand"                      # normalized keyword
CATEGORY_PATH = "category_path"      # every ancestor path, "a", "a>b", "a>b>c"
CATEGORY_LEAF = "category_leaf"      # the full leaf path
CATEGORY_LEVEL_PREFIX = "category_l"  # category_l0, category_l1, ... one name per level
CATEGORY_LEVELS = 4
ACCESSORY_OF = "accessory_of"        # brands / categories / product ids this is an accessory of
RELATED = "related"                  # related product ids
SERIES = "series"                    # product series / line
PRICE = "price"
RATING = "rating"
ATTRIBUTES = "attributes"            # original attribute object, stored only
ATTR_TERMS = "attr_terms"            # "key=value" keywords for attribute filters
PREDICTED_CATEGORY = "predicted_category"

# Chinese query helpers (issue 13): syllables and initials of title, brand and category values
# (one array element each, so a phrase never runs from one into the next), and the distinct
# words of those values, which the vocabulary reads for spelling corrections
PINYIN = "pinyin_full"                   # "lian yi qun" (toneless syllables, Latin words kept)
PINYIN_INITIALS = "pinyin_initials"  # "l y q"
TERMS = "lexicon"                    # keyword: every word of the title, brand and category

# vectors
TEXT_VECTOR = "text_vector"          # title+description in the shared text-image space
FUSED_VECTOR = "fused_vector"        # normalize(w_img * image + w_txt * text)
IMAGES = "images"                    # nested, one entry per product image
IMAGE_URLS = "image_urls"            # every image URL again, top level: read from doc values for display
IMAGE_URL = "url"                    # inside IMAGES
IMAGE_VECTOR = "vector"              # inside IMAGES: shared space
IMAGE_FEATURE = "feature"            # inside IMAGES: raw backbone feature (image -> image)

# suggestions and diversity (issue 13)
SUGGEST = "suggest"                  # completion field: title, brand and category inputs (Chinese, pinyin, initials)
SUGGEST_CONTEXT = "kind"             # not a field: the suggest field's context, which kind of suggestion an input is
GROUP = "group"                      # near-duplicate group (brand + title, normalized): what collapse keeps one of
POPULARITY = "popularity"            # clicks from the events index (``cmsearch suggest --refresh-popularity``)

SEP = ">"                            # category path separator inside category_path


def category_level(i: int) -> str:
    return f"{CATEGORY_LEVEL_PREFIX}{i}"


def nested(field: str) -> str:
    """Full path of a field inside the nested image objects."""
    return f"{IMAGES}.{field}"


CATEGORY_LEVEL_FIELDS = tuple(category_level(i) for i in range(CATEGORY_LEVELS))
TEXT_FIELDS = (TITLE, DESCRIPTION, BRAND_TEXT, CATEGORY_TEXT, OCR_TEXT)
PINYIN_FIELDS = (PINYIN, PINYIN_INITIALS)
VECTOR_FIELDS = (TEXT_VECTOR, FUSED_VECTOR, nested(IMAGE_VECTOR), nested(IMAGE_FEATURE))
FILTERABLE = {
    "brand": BRAND,
    "category": CATEGORY_PATH,
    "series": SERIES,
    "price": PRICE,
    "rating": RATING,
    "attribute": ATTR_TERMS,
    "id": ID,
}
