using System.Globalization;

namespace PacketProcessor.Frames;

/// <summary>
/// Frame sizes and their weights: a single size (<c>--size 64</c>), the simple IMIX (<c>--mix imix</c>: 64, 576
/// and 1518 bytes weighted 7:4:1) or a list (<c>--mix 64:7,576:4,1518:1</c>).
/// </summary>
public sealed class SizeMix
{
    private SizeMix((int Size, int Weight)[] entries) => Entries = entries;

    /// <summary>Sizes and weights.</summary>
    public IReadOnlyList<(int Size, int Weight)> Entries { get; }

    /// <summary>One size.</summary>
    public static SizeMix Fixed(int size)
    {
        Check(size);
        return new SizeMix([(size, 1)]);
    }

    /// <summary>The simple IMIX: 64, 576 and 1518 bytes weighted 7:4:1.</summary>
    public static SizeMix Imix { get; } = new([(64, 7), (576, 4), (1518, 1)]);

    /// <summary>Parses <c>imix</c> or <c>SIZE[:WEIGHT],...</c>; false with a message on bad input.</summary>
    public static bool TryParse(string text, out SizeMix? mix, out string? error)
    {
        mix = null;
        error = null;
        if (string.Equals(text.Trim(), "imix", StringComparison.OrdinalIgnoreCase))
        {
            mix = Imix;
            return true;
        }
        var entries = new List<(int, int)>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] sw = part.Split(':');
            if (sw.Length > 2 || !int.TryParse(sw[0], NumberStyles.None, CultureInfo.InvariantCulture, out int size)
                || size < FrameBuilder.MinFrameLength || size > FrameBuilder.MaxJumboFrameLength)
            {
                error = $"'{part}': a size is {FrameBuilder.MinFrameLength}..{FrameBuilder.MaxJumboFrameLength} bytes, optionally followed by :WEIGHT.";
                return false;
            }
            int weight = 1;
            if (sw.Length == 2 && (!int.TryParse(sw[1], NumberStyles.None, CultureInfo.InvariantCulture, out weight) || weight < 1 || weight > 1000))
            {
                error = $"'{part}': a weight is 1..1000.";
                return false;
            }
            entries.Add((size, weight));
        }
        if (entries.Count == 0)
        {
            error = "The mix is empty: give 'imix' or SIZE[:WEIGHT],...";
            return false;
        }
        mix = new SizeMix([.. entries]);
        return true;
    }

    /// <summary>Mean frame size over the weights.</summary>
    public double MeanSize => Entries.Sum(e => (double)e.Size * e.Weight) / Entries.Sum(e => e.Weight);

    private static void Check(int size)
    {
        if (size < FrameBuilder.MinFrameLength || size > FrameBuilder.MaxJumboFrameLength)
            throw new ArgumentOutOfRangeException(nameof(size), size, $"A frame size is {FrameBuilder.MinFrameLength}..{FrameBuilder.MaxJumboFrameLength} bytes.");
    }

    /// <inheritdoc />
    public override string ToString() =>
        ReferenceEquals(this, Imix) ? "imix (64:7,576:4,1518:1)"
        : Entries.Count == 1 ? $"{Entries[0].Size} B"
        : string.Join(",", Entries.Select(e => $"{e.Size}:{e.Weight}"));
}
