"""Moved to service/jobqueue/ (issue 16). This re-export keeps `from service.jobs import register_job_kind`
working in the routers until they import service.jobqueue directly."""

from service.jobqueue import register_job_kind

__all__ = ["register_job_kind"]
