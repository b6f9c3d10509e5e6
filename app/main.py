"""The FastAPI application: wiring of settings, database, cache, code host and routers."""

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import __version__, errors
from app.admin import Faults, inject_faults
from app.admin import router as admin_router
from app.admission import InFlightLimit
from app.auth.service import KeyVerifier
from app.cache import make_cache
from app.config import Settings, get_settings
from app.db import Database
from app.health.probe import DatabaseProbe
from app.health.readiness import ReadinessCheck
from app.health.router import router as health_router
from app.reviews.flows import CodeHost, OutboxWorker
from app.reviews.gauges import SharedStateGauge
from app.reviews.router import router as reviews_router
from app.telemetry import Telemetry, fastapi_telemetry_config, instrument_app, instrument_engine, metrics


def create_app(settings: Settings | None = None, *, telemetry: Telemetry | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = Database(settings)
    instrument_engine(db.engine)
    cache = make_cache(
        settings.redis_url,
        timeout_seconds=settings.redis_timeout_seconds,
        max_entries=settings.memory_cache_max_entries,
    )
    code_host = CodeHost(settings.code_host_url, settings.code_host_token, settings.code_host_timeout_seconds)
    probe = DatabaseProbe(settings, settings.db_probe_interval_seconds)
    metrics.observe_database(probe)
    readiness = ReadinessCheck(settings, cache)
    shared_state = SharedStateGauge(db.sessionmaker, settings.pending_gauge_refresh_seconds)
    metrics.set_shared_state_reader(shared_state.read)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        probe.start()
        shared_state.start()
        outbox = None
        if settings.action_retry_enabled:
            outbox = OutboxWorker(
                sessions=db.sessionmaker,
                code_host=code_host,
                policy=settings.action_policy,
                poll_seconds=settings.action_retry_poll_seconds,
            )
            outbox.start()
        app.state.outbox = outbox
        try:
            yield
        finally:
            # uvicorn re-raises SIGTERM, so atexit never runs: flush telemetry here.
            if outbox is not None:
                outbox.stop()
            shared_state.stop()
            probe.close()
            readiness.close()
            cache.close()
            db.engine.dispose()
            if telemetry is not None:
                telemetry.shutdown()

    app = FastAPI(
        title="HITL review service",
        version=__version__,
        description=(
            "People approve, reject, modify or escalate machine-made security patches (APVs). "
            "Every route but /health needs an API key in the X-API-Key header."
        ),
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        telemetry=fastapi_telemetry_config(),
    )
    app.state.settings = settings
    app.state.db = db
    app.state.cache = cache
    app.state.code_host = code_host
    app.state.database_probe = probe
    app.state.readiness = readiness
    app.state.shared_state = shared_state
    app.state.verifier = KeyVerifier()
    app.state.faults = Faults(
        error_ratio=settings.fault_error_ratio,
        delay_ratio=settings.fault_delay_ratio,
        delay_seconds=settings.fault_delay_seconds,
    )
    errors.install(app)
    app.add_middleware(InFlightLimit, limit=settings.max_in_flight)
    app.include_router(health_router)
    app.include_router(reviews_router, dependencies=[Depends(inject_faults)])
    app.include_router(admin_router)
    instrument_app(app)
    return app
