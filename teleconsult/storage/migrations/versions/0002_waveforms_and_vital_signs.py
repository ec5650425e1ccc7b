"""waveforms and vital signs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:29:11.865320
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('waveform_streams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('consultation_id', sa.Integer(), nullable=True),
    sa.Column('source_user_id', sa.Integer(), nullable=True),
    sa.Column('source_key', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=120), nullable=False),
    sa.Column('rate_mhz', sa.BigInteger(), nullable=False),
    sa.Column('signals', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_seq', sa.BigInteger(), nullable=False),
    sa.Column('next_sample', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_waveform_streams_consultation_id_consultations')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waveform_streams_patient_id_patients')),
    sa.ForeignKeyConstraint(['source_user_id'], ['users.id'], name=op.f('fk_waveform_streams_source_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waveform_streams')),
    sa.UniqueConstraint('patient_id', 'source_key', name='uq_waveform_streams_source')
    )
    with op.batch_alter_table('waveform_streams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waveform_streams_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waveform_streams_patient_id'), ['patient_id'], unique=False)

    op.create_table('vital_signs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('consultation_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('value2', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('recorded_by_user_id', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Integer(), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], name=op.f('fk_vital_signs_consultation_id_consultations')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_vital_signs_patient_id_patients')),
    sa.ForeignKeyConstraint(['recorded_by_user_id'], ['users.id'], name=op.f('fk_vital_signs_recorded_by_user_id_users')),
    sa.ForeignKeyConstraint(['stream_id'], ['waveform_streams.id'], name=op.f('fk_vital_signs_stream_id_waveform_streams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vital_signs')),
    sa.UniqueConstraint('patient_id', 'recorded_by_user_id', 'client_id', name='uq_vital_signs_client')
    )
    with op.batch_alter_table('vital_signs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vital_signs_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vital_signs_patient_id'), ['patient_id'], unique=False)

    op.create_table('waveform_chunks',
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('first_sample', sa.BigInteger(), nullable=False),
    sa.Column('n_samples', sa.Integer(), nullable=False),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['stream_id'], ['waveform_streams.id'], name=op.f('fk_waveform_chunks_stream_id_waveform_streams')),
    sa.PrimaryKeyConstraint('stream_id', 'first_sample', name=op.f('pk_waveform_chunks'))
    )
    op.create_table('waveform_frames',
    sa.Column('stream_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('first_sample', sa.BigInteger(), nullable=False),
    sa.Column('n_samples', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['stream_id'], ['waveform_streams.id'], name=op.f('fk_waveform_frames_stream_id_waveform_streams')),
    sa.PrimaryKeyConstraint('stream_id', 'seq', name=op.f('pk_waveform_frames'))
    )



def downgrade() -> None:

    op.drop_table('waveform_frames')
    op.drop_table('waveform_chunks')
    with op.batch_alter_table('vital_signs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vital_signs_patient_id'))
        batch_op.drop_index(batch_op.f('ix_vital_signs_consultation_id'))

    op.drop_table('vital_signs')
    with op.batch_alter_table('waveform_streams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waveform_streams_patient_id'))
        batch_op.drop_index(batch_op.f('ix_waveform_streams_consultation_id'))

    op.drop_table('waveform_streams')

