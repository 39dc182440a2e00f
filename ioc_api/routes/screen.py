"""``GET /api/v1/screen``: what the screen needs before anyone logs in (its base map)."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

router = APIRouter(tags=["screen"])


class ScreenConfig(BaseModel):
    tile_url: str | None = Field(description="Tile server of the base map; null: draw units and boundary only.")


@router.get("/screen", summary="The screen's settings")
async def screen_config(request: Request) -> ScreenConfig:
    return ScreenConfig(tile_url=request.app.state.settings.screen_tile_url)
