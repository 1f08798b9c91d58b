"""DynamoDB key schema shared by the adapters (which read and write) and the stack (which creates tables).

Both tables use a generic string partition key `pk` and sort key `sk` (single-table style), and a numeric
epoch-seconds TTL attribute `expires_at`.
"""

from __future__ import annotations

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"

# The deny log's secondary index: every event of one CIDR, in time order (`floodgate show CIDR`).
LOG_BY_CIDR_INDEX = "by-cidr"
LOG_BY_CIDR_PARTITION_KEY = "cidr"
LOG_BY_CIDR_SORT_KEY = "sk"
