package ai.multilora;

/** Element type and declared shape of a model input or output (symbolic dims are -1). */
public final class TensorInfo {
    public final String name;
    public final int dtype;
    public final long[] shape;

    TensorInfo(String name, int dtype, long[] shape) {
        this.name = name;
        this.dtype = dtype;
        this.shape = shape;
    }
}
