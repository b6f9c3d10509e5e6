"""decisions as an action outbox: a due-time index the claim uses; client idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

DUE = sa.text("action_next_attempt_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_digest', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_decisions_reviewer_idempotency_key', ['reviewer', 'idempotency_key'])
        batch_op.drop_index('ix_decisions_action_retry')
        batch_op.create_index(
            'ix_decisions_action_due', ['action_next_attempt_at'], unique=False,
            postgresql_where=DUE, sqlite_where=DUE,
        )
    # Before this revision an action whose process died mid-call stayed 'pending' with no due
    # time, which nothing ever picked up again: make those due now.
    op.execute(
        "UPDATE decisions SET action_next_attempt_at = created_at "
        "WHERE action_status = 'pending' AND action_next_attempt_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_action_due')
        batch_op.create_index('ix_decisions_action_retry', ['action_status', 'action_next_attempt_at'], unique=False)
        batch_op.drop_constraint('uq_decisions_reviewer_idempotency_key', type_='unique')
        batch_op.drop_column('request_digest')
        batch_op.drop_column('idempotency_key')
