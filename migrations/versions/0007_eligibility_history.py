"""eligibility history (person_categories) and the lost-eligibility flag on cases

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 15:00:00

"""
from alembic import op
import sqlalchemy as sa

import casework.db  # noqa: F401 - custom column types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

CATEGORIES = (
    "poor_not_exited", "poor_newly_identified", "poor_exited_2014_2015", "poor_exited_supported",
    "poor_exited_unsupported", "subsistence", "extreme_poverty", "marginal", "hardship",
)


def upgrade():
    op.create_table(
        'person_categories',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('category', sa.String(length=30), nullable=False),
        sa.Column('since', sa.Date(), nullable=False),
        sa.Column('source', sa.String(length=40), nullable=False),
        sa.Column('recorded_at', casework.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "category IN (" + ", ".join(f"'{c}'" for c in CATEGORIES) + ")",
            name=op.f('ck_person_categories_category'),
        ),
        sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_person_categories_person_id_persons')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_person_categories')),
        sa.UniqueConstraint('person_id', 'since', 'category', name=op.f('uq_person_categories_person_id')),
    )
    # Existing persons start their history with what they are registered as.
    op.execute(
        "INSERT INTO person_categories (person_id, category, since, source, recorded_at) "
        "SELECT id, category, category_since, 'registration', created_at FROM persons"
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('eligibility_lost_on', sa.Date(), nullable=True))


def downgrade():
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('eligibility_lost_on')
    op.drop_table('person_categories')
