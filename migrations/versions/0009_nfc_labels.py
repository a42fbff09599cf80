"""Text that rules compare, in Unicode NFC: rule text is read in NFC and ingest now stores these
columns in NFC, so rows stored before are brought to NFC too (only those not in it change).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The columns service/data/records.py reads as LABEL (text compared by rules), by table.
_LABELS = {
    "customers": ("gender", "occupation", "region", "industry"),
    "orders": ("category", "channel"),
    "events": ("type",),
}


def upgrade() -> None:
    for table, columns in _LABELS.items():
        for column in columns:
            op.execute(
                f"UPDATE {table} SET {column} = normalize({column}, NFC) "
                f"WHERE {column} IS NOT NFC NORMALIZED"
            )
    # jsonb's text form writes characters, not \u escapes: normalising it normalises the
    # attributes' keys and string values.
    op.execute(
        "UPDATE customers SET attributes = normalize(attributes::text, NFC)::jsonb "
        "WHERE attributes::text IS NOT NFC NORMALIZED"
    )


def downgrade() -> None:
    # The decomposed forms are not kept: NFC text is the same text, and stays.
    pass
