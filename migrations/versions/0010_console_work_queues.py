"""console work queues: cases by county or hospital, state and deadline

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-23 15:30:00

The console's home pages show, per state, the most urgent cases of a county or a hospital; these
indexes answer each pile with an index scan of LIMIT rows instead of sorting the whole county.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_county_state_due', ['county_code', 'state', 'due_at'], unique=False)
        batch_op.create_index('ix_cases_hospital_state_due', ['hospital_code', 'state', 'due_at'], unique=False)


def downgrade():
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_hospital_state_due')
        batch_op.drop_index('ix_cases_county_state_due')
