"""aml-local's errors as the exception types azure-ai-ml raises, so that user code catches them the same way.

A resource that does not exist: azure.core's ResourceNotFoundError (azure-ai-ml lets the service's 404 through from
every get). Anything else aml-local refuses (bad input, a state that does not allow it): azure-ai-ml's
ValidationException, its type for a user's fault that it finds before the service does. A failed endpoint call is
azure.core's HttpResponseError, as OnlineEndpointOperations.invoke raises (_utils/_endpoint_utils.py
validate_response). A job that ends failed while streamed: JobException (operations/_job_ops_helper.py)."""

import contextlib

from azure.ai.ml.exceptions import ErrorCategory, ErrorTarget, JobException, ValidationException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from aml_local import AmlLocalError, ResourceNotFound


class NotAvailableLocally(NotImplementedError):
    """An azure-ai-ml method this client does not have: one line naming it and what to use instead."""


def validation_error(message: str, target=ErrorTarget.GENERAL) -> ValidationException:
    return ValidationException(
        message=message, no_personal_data_message=message, target=target, error_category=ErrorCategory.USER_ERROR
    )


def job_failed(message: str) -> JobException:
    return JobException(
        message=message,
        no_personal_data_message="Exception raised on failed job.",
        target=ErrorTarget.JOB,
        error_category=ErrorCategory.SYSTEM_ERROR,
    )


@contextlib.contextmanager
def as_azure(target=ErrorTarget.GENERAL, http=False):
    """Run a verb, raising what it refuses as azure-ai-ml would (the one-line message kept); `http`: a call that
    azure-ai-ml makes over HTTP, whose failures are HttpResponseError."""
    try:
        yield
    except ResourceNotFound as err:
        raise ResourceNotFoundError(str(err)) from None
    except AmlLocalError as err:
        if http:
            raise HttpResponseError(message=str(err)) from None
        raise validation_error(str(err), target) from None
