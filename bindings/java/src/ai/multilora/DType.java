package ai.multilora;

/** Element types, numbered as ONNX TensorProto.DataType (the C MLORA_DTYPE_* values). */
public final class DType {
    public static final int FLOAT32 = MultiloraLibrary.MLORA_DTYPE_FLOAT32;
    public static final int UINT8 = MultiloraLibrary.MLORA_DTYPE_UINT8;
    public static final int INT8 = MultiloraLibrary.MLORA_DTYPE_INT8;
    public static final int INT32 = MultiloraLibrary.MLORA_DTYPE_INT32;
    public static final int INT64 = MultiloraLibrary.MLORA_DTYPE_INT64;
    public static final int BOOL = MultiloraLibrary.MLORA_DTYPE_BOOL;
    public static final int FLOAT16 = MultiloraLibrary.MLORA_DTYPE_FLOAT16;
    public static final int FLOAT64 = MultiloraLibrary.MLORA_DTYPE_FLOAT64;
    public static final int BFLOAT16 = MultiloraLibrary.MLORA_DTYPE_BFLOAT16;

    private DType() {}
}
