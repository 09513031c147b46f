"""cases.township_code (indexed with id), village index in list order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:10:00

Village doctors see their township and ``region=<township>`` filters by it: with the township copied
onto the case (as county, city and province already are) both are one indexed equality that walks
``(township_code, id)`` in list order, instead of one lookup per village plus a sort. Existing cases
get the township their village hangs under.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('township_code', sa.String(length=20), nullable=True))

    op.execute(
        "UPDATE cases SET township_code = "
        "(SELECT parent_code FROM org_units WHERE org_units.code = cases.village_code)"
    )

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.alter_column('township_code', existing_type=sa.String(length=20), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_cases_township_code_org_units'), 'org_units', ['township_code'], ['code']
        )
        batch_op.drop_index('ix_cases_village_code')
        batch_op.create_index('ix_cases_township_id', ['township_code', 'id'], unique=False)
        batch_op.create_index('ix_cases_village_id', ['village_code', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_village_id')
        batch_op.drop_index('ix_cases_township_id')
        batch_op.create_index('ix_cases_village_code', ['village_code'], unique=False)
        batch_op.drop_constraint(batch_op.f('fk_cases_township_code_org_units'), type_='foreignkey')
        batch_op.drop_column('township_code')
