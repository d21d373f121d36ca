package ai.multilora;

/** A LoRA input of a model: element type, its two dims and which axis (0 or 1) is the rank axis. */
public final class LoraInputInfo {
    public final String name;
    public final int dtype;
    public final long dim0;
    public final long dim1;
    public final int rankAxis;

    LoraInputInfo(String name, int dtype, long dim0, long dim1, int rankAxis) {
        this.name = name;
        this.dtype = dtype;
        this.dim0 = dim0;
        this.dim1 = dim1;
        this.rankAxis = rankAxis;
    }
}
