// Callers of this modality catch `MediaError` without importing the shared module themselves.
@_exported import Media
