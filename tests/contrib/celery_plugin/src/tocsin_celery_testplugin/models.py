"""A SQLAlchemy model, so instances travel to the worker as class path + primary key."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(100))


class Refund:
    """Not mapped: a sender the order receiver's sender filter does not match."""
