"""decisions.action_clean_failures: attempts known to have done nothing, so a retry after an
attempt of unknown outcome reads the code host's state before calling again

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows start at 0: their next retry, if any, reads the state first (the safe side).
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('action_clean_failures', sa.Integer(), server_default=sa.text('0'), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('action_clean_failures')
