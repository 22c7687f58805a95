// Callers of this modality use the shared media pieces (`MediaError`, the PNG codec) and the
// workflow layer (pipeline folders, recipes, training runs, augmentation) without importing them.
@_exported import Media
@_exported import Workflow
