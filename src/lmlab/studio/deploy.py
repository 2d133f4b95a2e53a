"""Placeholder: the deploy routes (built on the studio-b branch)."""

from __future__ import annotations

from fastapi import APIRouter

from lmlab.studio.context import StudioContext


def make_router(ctx: StudioContext) -> APIRouter:
    return APIRouter()
