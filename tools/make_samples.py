#!/usr/bin/env python3
"""Write samples/warc/: small web archives for trying `curate crawl` and the later stages.

    python tools/make_samples.py            # rewrites samples/warc/*

Deterministic: a fixed seed, fixed WARC dates and record ids, and gzip members without
timestamps, so running it twice gives byte-identical files. The page texts are generated
from hand-written sentence banks (below) per topic and language, drawing each page's sentences
without replacement, so a good page never repeats itself (it passes the Gopher, C4 and FineWeb
rules at their published defaults), every page is different, and the whole set is reproducible.

What is in there (a few hundred records), and what each part is for:

* articles in English (five topics, several hundred words each) and in Vietnamese, German,
  French, Spanish, Russian, Chinese and Japanese: what quality filters should keep;
* boilerplate-heavy pages (big navigation, cookie banner, footer, one short paragraph);
* spam / SEO pages (keyword stuffing, the same line over and over);
* exact duplicates (the same article on two URLs) and near duplicates (a few sentences
  changed) for dedup;
* safety-filter bait: two pages on blocklisted-looking domains (``adult-xxx-cams.com``,
  ``free-crack-downloads.ru``), pages with an e-mail address and a phone number (PII);
* pages in legacy charsets: windows-1251 (declared in the HTTP header), gb2312 (declared only
  in ``<meta>``), EUC-JP (header) and Shift_JIS (meta);
* transfer/content encodings: chunked, gzip, deflate and brotli bodies;
* records that are not pages: request and metadata records, robots.txt, a PNG image, a JSON
  API answer, a 301 redirect, a 404, a revisit record;
* one WET file (``conversion`` records with plain text), as Common Crawl publishes them.

Dates are spread over 2023-2024 (later stages compute a training cutoff from them).
"""

from __future__ import annotations

import io
import random
import struct
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import brotli
from warcio.warcwriter import WARCWriter

SEED = 20241128
OUT = Path(__file__).resolve().parent.parent / "samples" / "warc"
CRAWL_NAME = "CURATE-SAMPLES-2024"

# ---- sentence banks (written for this project) -----------------------------------------------

EN = {
    "cooking": [
        "A good stock starts with cold water, a few roasted bones and a great deal of patience.",
        "Salt the pasta water generously, because it is the only chance to season the noodles themselves.",
        "Resting a roast for ten minutes lets the juices settle back into the meat instead of the cutting board.",
        "Most home cooks crowd the pan, which steams the vegetables when they should be browning.",
        "A squeeze of lemon at the end brightens a heavy stew more than another pinch of salt would.",
        "Bread dough that has doubled in size and springs back slowly when pressed is ready to shape.",
        "Toasting whole spices in a dry pan for a minute releases oils that ground spices lost long ago.",
        "The secret of a crisp pie crust is cold butter, cold water and as little handling as possible.",
        "Onions cooked slowly for forty minutes turn sweet and deep brown without any sugar at all.",
        "When a recipe says to fold in egg whites, it means gently, with a spatula and a turning wrist.",
        "Leftover rice fries better than fresh rice because the grains have dried out overnight.",
        "Tasting as you go is the habit that separates confident cooks from anxious ones.",
        "Cast iron pans hold heat well, so they keep searing even after cold food lands in them.",
        "A sharp knife is safer than a dull one, since it does not slip off the skin of a tomato.",
        "Blanching green beans for two minutes and plunging them into ice water keeps their colour bright.",
        "A thermometer takes the guesswork out of roasting chicken, which is done at seventy-four degrees inside.",
        "Soaking dried chickpeas overnight shortens their cooking time and makes them easier to digest.",
        "Freshly ground black pepper tastes sharper and more floral than the dust sold in tins.",
        "Deglazing the pan with a splash of wine lifts the browned bits that carry most of the flavour.",
        "Herbs with soft leaves, such as basil and parsley, belong at the end of cooking rather than the start.",
        "Weighing flour gives more reliable baking than scooping it with a cup, which packs it unevenly.",
        "A pinch of sugar in a tomato sauce balances the acidity of tinned tomatoes picked too early.",
        "Letting cookie dough chill overnight deepens its taste and keeps the cookies from spreading flat.",
        "Cutting boards made of wood are gentle on knife edges and easy to sand smooth again.",
        "Good olive oil is best used raw, drizzled over soup or salad, where its fruitiness survives.",
        "Planning meals for the week reduces waste and makes the evening rush in the kitchen calmer.",
    ],
    "astronomy": [
        "On a clear night far from city lights, the band of the Milky Way is easy to see with the naked eye.",
        "Jupiter's four largest moons were first described by Galileo in 1610 with a small telescope.",
        "A light year measures distance, not time: it is how far light travels in one year.",
        "The Moon always shows the same face to Earth because its rotation is locked to its orbit.",
        "Meteor showers happen when Earth passes through the trail of dust left behind by a comet.",
        "Binoculars are often a better first instrument than a cheap telescope on a wobbly mount.",
        "Saturn's rings are made mostly of ice, with pieces ranging from dust grains to small houses.",
        "The planets stay close to a line across the sky called the ecliptic, which helps when finding them.",
        "Red giants are old stars that have swollen after burning through the hydrogen in their cores.",
        "Allow twenty minutes for your eyes to adapt to the dark before looking for faint galaxies.",
        "Astronomers measure the distance to nearby stars by watching them shift as Earth moves around the Sun.",
        "A total solar eclipse lasts only a few minutes at any one place on the ground.",
        "Mars looks reddish because its surface dust is rich in iron oxide, which is ordinary rust.",
        "Star charts and planisphere wheels still work well when a phone battery runs out in the cold.",
        "The International Space Station crosses the evening sky as a bright, steady point that never blinks.",
        "Venus is often called the evening star, although it is a planet wrapped in thick clouds of acid.",
        "The Andromeda galaxy is the most distant object most people can see without any optical aid.",
        "Light from the Sun takes a little over eight minutes to reach our planet.",
        "Comets brighten as they approach the Sun because heat turns their ice into glowing gas.",
        "A red flashlight preserves night vision far better than the white screen of a phone.",
        "Neutron stars pack more mass than the Sun into a sphere about the size of a city.",
        "The northern lights appear when charged particles from the Sun collide with gases high in the atmosphere.",
        "Polaris stays almost fixed in the sky because it sits nearly above the northern axis of our planet.",
        "Amateur observers have discovered many comets and supernovae by patiently comparing photographs.",
        "Craters on the Moon are easiest to see near the terminator, where long shadows show their depth.",
        "Every single star visible without a telescope belongs to our own galaxy.",
    ],
    "gardening": [
        "Tomatoes need at least six hours of direct sun a day to set a generous crop of fruit.",
        "Water deeply and less often, so that roots grow down instead of staying near the surface.",
        "A layer of mulch keeps the soil moist, cool and mostly free of weeds through the summer.",
        "Compost is ready when it smells like forest soil and you can no longer recognise what went in.",
        "Rotating crops between beds each year keeps soil diseases from building up in one place.",
        "Seedlings grown indoors should be hardened off over a week before they go into the garden.",
        "Bees visit flowers in the morning, so spray nothing on blooming plants early in the day.",
        "Pruning roses just above an outward facing bud keeps the centre of the bush open to the air.",
        "Beans and peas add nitrogen to the soil, which helps the leafy vegetables planted after them.",
        "Clay soil holds water and nutrients well but needs organic matter to drain and breathe.",
        "Slugs hide under boards during the day, which makes them easy to collect in the evening.",
        "Garlic planted in autumn grows roots over winter and gives larger bulbs the next summer.",
        "A simple soil test tells you more about a struggling bed than any bottle of fertiliser.",
        "Keep a notebook of what you planted where, because memory fades long before the next spring.",
        "Young sunflowers turn to follow the Sun, then settle facing east once they bloom.",
        "Rainwater collected in barrels is softer than tap water, and most plants prefer it.",
        "Marigolds planted among vegetables are said to discourage some pests with their strong scent.",
        "Strawberries send out runners that can be pinned down to root new plants for next year.",
        "Leaves that turn yellow from the bottom up often signal a plant that needs more nitrogen.",
        "Raised beds warm up earlier in spring and spare the gardener's back during weeding.",
        "Potatoes should be earthed up as they grow so that the tubers stay hidden from the light.",
        "Thyme and rosemary thrive in poor, dry soil and dislike being overwatered.",
        "Fallen leaves raked into a pile will break down into rich leaf mould within two years.",
        "Sowing lettuce every two weeks gives a steady harvest instead of a glut all at once.",
        "A hedge of native shrubs feeds birds in winter and shelters insects that eat aphids.",
        "Frost pockets form at the bottom of slopes, where cold air settles on still nights.",
    ],
    "history": [
        "The printing press spread across Europe within fifty years of its invention in Mainz.",
        "Roman roads were built in layers of sand, gravel and stone, and some are still in use today.",
        "The Silk Road was never a single road but a web of routes linking China to the Mediterranean.",
        "Before standard time zones, every town set its clocks by the position of the Sun at noon.",
        "The library of Alexandria declined over centuries rather than burning down in a single night.",
        "Medieval monks copied books by hand, and a single Bible could take years to finish.",
        "The first railways carried coal before anyone thought passengers would want to ride them.",
        "Historians read old tax records because they reveal how ordinary families actually lived.",
        "The Great Wall of China was built and rebuilt by many dynasties over nearly two thousand years.",
        "Letters carried by sailing ships could take months, so governors often acted on old news.",
        "The invention of cheap paper mattered as much to learning as the invention of writing itself.",
        "Many city walls were torn down in the nineteenth century to make room for wide boulevards.",
        "Archaeologists date layers of soil by the pottery styles and coins they find inside them.",
        "Public clocks on church towers taught whole towns to organise their days by the hour.",
        "The Black Death killed perhaps a third of Europe's population in the middle of the fourteenth century.",
        "Ancient Egyptians wrote on papyrus made from reeds that grew along the banks of the Nile.",
        "The telegraph allowed news to cross an ocean in minutes once the first cables were laid.",
        "Venice grew rich by controlling trade between Europe and the ports of the eastern Mediterranean.",
        "Many surnames still recall the trades of medieval ancestors, such as smith, baker and miller.",
        "The Industrial Revolution began in Britain, where coal and iron were found close together.",
        "Maps drawn before the age of exploration often filled unknown regions with monsters and guesses.",
        "The Incas kept records with knotted cords called quipu rather than with written words.",
        "Canals dug in the eighteenth century carried heavy goods far more cheaply than carts on muddy roads.",
        "Coffee houses in London became places where merchants traded gossip, news and shares.",
        "Women worked in munitions factories during both world wars, changing ideas about their place in society.",
        "The Rosetta Stone let scholars decipher hieroglyphs because it repeated one decree in three scripts.",
    ],
    "software": [
        "A test that never fails is not protecting anything, no matter how green the dashboard looks.",
        "Version control lets a team experiment freely, because every change can be undone.",
        "Most performance problems come from doing unnecessary work, not from a slow language.",
        "Clear names for variables save more time than clever comments explaining confusing ones.",
        "Streaming data through a program keeps memory flat, whatever the size of the input file.",
        "A good error message says what went wrong, where it happened and what to try next.",
        "Code reviews catch design problems early, when they are still cheap to fix.",
        "Logging every request is useful until the log files become larger than the database.",
        "Small functions with one job are easier to test than long functions that do everything.",
        "Caching makes systems fast and also makes them much harder to reason about.",
        "Writing the documentation first often reveals that an interface is harder to use than expected.",
        "Deterministic builds mean that the same source always produces exactly the same program.",
        "Profiling before optimising prevents weeks of work on code that was never the bottleneck.",
        "Backups that have never been restored should be treated as if they did not exist.",
        "Automated formatting ends arguments about style and lets reviewers focus on what the code does.",
        "A flaky test teaches a team to ignore failures, which is worse than having no test at all.",
        "Configuration kept in version control can be reviewed and rolled back like any other change.",
        "Feature flags let new code ship to production while staying hidden from most users.",
        "Measuring memory use under real load often reveals leaks that never show up on a laptop.",
        "Retries with exponential backoff protect a service from its own clients during an outage.",
        "Dependencies should be pinned, so that a build made next year uses the libraries chosen today.",
        "Reading the source of a library is often faster than searching forums for an answer.",
        "Atomic writes, a temporary file followed by a rename, keep a crash from leaving half a file behind.",
        "An index on the right column can turn a query that takes minutes into one that takes milliseconds.",
        "Pair programming spreads knowledge of a system faster than any amount of written documentation.",
        "Deleting unused code is one of the most reliable ways to remove bugs.",
    ],
}

OTHER = {
    "vi": (
        "Bài viết",
        [
            "Hà Nội vào mùa thu có tiết trời mát mẻ và những con phố rợp bóng cây xanh.",
            "Phở bò là món ăn sáng quen thuộc của nhiều gia đình Việt Nam.",
            "Người nông dân thường dậy từ sáng sớm để ra đồng trước khi trời nắng gắt.",
            "Sông Mê Kông chảy qua nhiều quốc gia trước khi đổ ra Biển Đông.",
            "Học sinh chuẩn bị kỹ lưỡng cho kỳ thi tốt nghiệp trung học phổ thông.",
            "Chợ nổi Cái Răng là điểm đến nổi tiếng của du khách khi ghé thăm Cần Thơ.",
            "Cà phê sữa đá được nhiều người yêu thích trong những ngày hè oi bức.",
            "Thư viện thành phố vừa mở thêm phòng đọc dành riêng cho thiếu nhi.",
            "Những cánh đồng lúa chín vàng trải dài đến tận chân trời vào tháng mười.",
            "Vịnh Hạ Long có hàng nghìn hòn đảo đá vôi với hình dáng độc đáo.",
            "Các nhà khoa học đang nghiên cứu giống lúa chịu mặn cho vùng đồng bằng.",
            "Tết Nguyên Đán là dịp để các gia đình sum họp và chúc nhau năm mới an khang.",
            "Mùa mưa ở miền Nam thường bắt đầu vào tháng năm và kéo dài đến tháng mười một.",
            "Nhiều bạn trẻ chọn đi xe buýt để tiết kiệm chi phí và giảm ô nhiễm không khí.",
            "Bánh mì Sài Gòn nổi tiếng với lớp vỏ giòn và nhân thịt đậm đà.",
            "Làng gốm Bát Tràng đã có lịch sử hàng trăm năm bên bờ sông Hồng.",
            "Các bác sĩ khuyên mọi người nên uống đủ nước và tập thể dục đều đặn mỗi ngày.",
            "Đà Lạt được mệnh danh là thành phố ngàn hoa với khí hậu mát mẻ quanh năm.",
            "Nghề dệt lụa truyền thống vẫn được gìn giữ ở nhiều làng quê miền Bắc.",
            "Sinh viên năm nhất thường gặp khó khăn khi làm quen với cách học ở đại học.",
            "Ruộng bậc thang ở Sa Pa đẹp nhất vào mùa lúa chín cuối tháng chín.",
            "Ngư dân miền Trung ra khơi từ sớm và trở về khi mặt trời vừa lặn.",
        ],
    ),
    "de": (
        "Artikel",
        [
            "Im Herbst färben sich die Wälder im Schwarzwald in leuchtendem Rot und Gold.",
            "Viele Pendler fahren morgens mit der Bahn in die Innenstadt zur Arbeit.",
            "Ein gutes Brot braucht Zeit, denn der Teig muss langsam und gründlich gehen.",
            "Die Stadtbibliothek bietet jeden Samstag eine Lesestunde für Kinder an.",
            "Der Rhein ist seit Jahrhunderten eine der wichtigsten Wasserstraßen Europas.",
            "Im Sommer treffen sich die Nachbarn gern im Biergarten unter alten Kastanien.",
            "Die Forscher untersuchen, wie sich der Klimawandel auf die Alpengletscher auswirkt.",
            "Wer Fahrrad fährt, sollte auch bei kurzen Strecken einen Helm tragen.",
            "Auf dem Wochenmarkt gibt es frisches Gemüse direkt von den Bauern aus der Region.",
            "Die Altstadt wurde nach dem Krieg sorgfältig wieder aufgebaut.",
            "Schüler lernen heute schon früh, wie man sicher mit dem Internet umgeht.",
            "Ein Spaziergang am Sonntagnachmittag gehört für viele Familien einfach dazu.",
            "Im Winter verwandeln sich viele Marktplätze in festlich beleuchtete Weihnachtsmärkte.",
            "Die Universität hat ein neues Labor für erneuerbare Energien eröffnet.",
            "Wanderer schätzen die gut markierten Wege im Harz und in der Sächsischen Schweiz.",
            "Immer mehr Menschen bauen auf ihrem Balkon eigene Kräuter und Tomaten an.",
            "Das Orchester probt seit Wochen für das große Konzert im Stadtpark.",
            "An der Nordsee kann man bei Ebbe kilometerweit durch das Watt laufen.",
            "Die Handwerkskammer sucht dringend junge Leute für eine Ausbildung im Bauwesen.",
            "Im Museum erklären Modelle, wie die ersten Dampfmaschinen funktionierten.",
            "Nach dem langen Regen führt die Elbe an manchen Stellen Hochwasser.",
            "Ein Stück Apfelkuchen mit Sahne ist für viele der Höhepunkt des Nachmittags.",
        ],
    ),
    "fr": (
        "Article",
        [
            "Le marché du samedi matin attire les habitants de tout le quartier.",
            "La Loire est célèbre pour ses châteaux construits pendant la Renaissance.",
            "Un bon croissant doit être feuilleté, léger et doré à souhait.",
            "Les chercheurs étudient l'impact de la sécheresse sur les vignobles du sud.",
            "La bibliothèque municipale organise des ateliers d'écriture pour les adolescents.",
            "Beaucoup de Parisiens préfèrent circuler à vélo depuis l'ouverture des nouvelles pistes.",
            "Le fromage affiné dans les caves garde une saveur plus profonde.",
            "Les randonneurs partent tôt pour profiter de la fraîcheur en montagne.",
            "La rentrée scolaire marque le retour des embouteillages dans les grandes villes.",
            "Le musée a ouvert une salle consacrée aux peintres impressionnistes.",
            "Les pêcheurs bretons rentrent au port avant que la tempête n'arrive.",
            "Une soupe de légumes maison réchauffe les soirées d'hiver.",
            "Les vendanges commencent dès que les raisins ont atteint la bonne maturité.",
            "Le nouveau tramway relie désormais la gare au centre hospitalier.",
            "Les enfants apprennent à nager dans la piscine municipale pendant les vacances.",
            "La lavande fleurit en juillet et colore les plateaux de Provence en violet.",
            "Un artisan boulanger se lève bien avant l'aube pour préparer les baguettes.",
            "Le festival de cinéma attire chaque année des réalisateurs du monde entier.",
            "Les agriculteurs plantent des haies pour protéger les champs contre le vent.",
            "La cathédrale a retrouvé sa façade d'origine après des années de restauration.",
            "Les étudiants se retrouvent au café pour réviser avant les examens de fin d'année.",
            "En automne, les forêts des Vosges se couvrent de champignons.",
        ],
    ),
    "es": (
        "Artículo",
        [
            "El mercado central de Valencia ofrece frutas y verduras frescas cada mañana.",
            "Muchas familias se reúnen los domingos para comer una paella al aire libre.",
            "La biblioteca del barrio amplió su horario durante la temporada de exámenes.",
            "Los científicos estudian cómo la sequía afecta a los olivares del sur.",
            "El camino de Santiago atrae a miles de peregrinos de todo el mundo.",
            "Una buena tortilla de patatas necesita paciencia y fuego lento.",
            "Las calles del casco antiguo se llenan de música durante las fiestas.",
            "Los estudiantes preparan sus proyectos de ciencias para la feria escolar.",
            "El Museo del Prado guarda algunas de las obras más importantes de Velázquez.",
            "En verano, la gente sale a pasear cuando baja el calor de la tarde.",
            "Los agricultores instalan sistemas de riego por goteo para ahorrar agua.",
            "El tren de alta velocidad une Madrid y Barcelona en menos de tres horas.",
            "Los pueblos blancos de Andalucía brillan bajo el sol de mediodía.",
            "La orquesta juvenil ofrecerá un concierto gratuito en la plaza mayor.",
            "Muchos vecinos cultivan tomates y pimientos en los huertos urbanos del barrio.",
            "El flamenco combina el cante, el baile y la guitarra en una expresión única.",
            "Los pescadores del norte salen al mar antes del amanecer en busca de anchoas.",
            "La universidad inauguró un laboratorio dedicado a la energía solar.",
            "En invierno, las estaciones de esquí de los Pirineos reciben a miles de visitantes.",
            "Un buen gazpacho se prepara con tomates maduros, pepino, pimiento y aceite de oliva.",
            "Los niños esperan con ilusión la llegada de los Reyes Magos cada enero.",
            "Las bibliotecas móviles llevan libros a los pueblos más pequeños de la provincia.",
        ],
    ),
    "ru": (
        "Статья",
        [
            "Осенью в парках Москвы деревья покрываются золотой и красной листвой.",
            "Многие семьи проводят летние выходные на даче за городом.",
            "Учёные изучают, как меняется толщина льда на озере Байкал.",
            "Городская библиотека открыла новый читальный зал для школьников.",
            "Хороший борщ получается только тогда, когда овощи нарезаны тонко и аккуратно.",
            "Транссибирская магистраль соединяет Москву с Владивостоком.",
            "Зимой дети катаются на санках с высоких снежных горок.",
            "В музее открылась выставка работ русских художников девятнадцатого века.",
            "Рыбаки выходят на реку рано утром, пока вода ещё спокойна.",
            "Студенты готовятся к сессии в читальных залах университета.",
            "На рынке продают свежий мёд, ягоды и грибы из соседних деревень.",
            "Белые ночи в Санкт-Петербурге привлекают туристов со всего мира.",
            "Весной на реках начинается ледоход, и люди собираются на набережных посмотреть на него.",
            "Новая линия метро сократила время поездки из пригорода в центр.",
            "Бабушка научила внуков печь блины с тонкими кружевными краями.",
            "Волга считается самой длинной рекой в европейской части России.",
            "В театре готовят премьеру спектакля по пьесе Чехова.",
            "Школьники посадили молодые берёзы вдоль дороги к новому стадиону.",
            "Летом в горах Алтая можно встретить табуны лошадей и стада овец.",
            "Исследователи наблюдают за миграцией птиц с помощью маленьких передатчиков.",
            "В деревне до сих пор топят русскую печь, чтобы согреть дом зимой.",
            "Фестиваль уличной музыки проходит в городе каждый август.",
        ],
    ),
    "zh": (
        "文章",
        [
            "秋天的北京天高气爽，香山的红叶吸引了许多游客。",
            "许多家庭在周末一起包饺子，享受团聚的时光。",
            "科学家正在研究气候变化对长江流域农业的影响。",
            "城市图书馆新开设了儿童阅览室，深受家长欢迎。",
            "高速铁路让城市之间的旅行变得更加方便快捷。",
            "江南的古镇保留了许多明清时期的老房子。",
            "学生们正在为期末考试认真复习功课。",
            "茶农在清晨采摘新鲜的茶叶，然后进行炒制。",
            "公园里经常可以看到老人们打太极拳。",
            "博物馆展出了一批出土的青铜器和陶器。",
            "春节期间，各地都会举办庙会和灯会。",
            "骑自行车上班既环保又有益于身体健康。",
            "黄山以奇松、怪石和云海闻名于世。",
            "越来越多的年轻人选择在网上购买新鲜蔬菜。",
            "夏天的傍晚，人们喜欢在河边散步乘凉。",
            "这所大学新建了一座现代化的实验楼。",
            "西湖边的柳树在春风中轻轻摇摆。",
            "农民们忙着收割金黄的小麦。",
            "社区组织志愿者帮助老人学习使用智能手机。",
            "桂林的山水风景被誉为甲天下。",
            "冬天的哈尔滨举办冰雪节，吸引了各地游客。",
            "孩子们在操场上快乐地踢足球。",
        ],
    ),
    "ja": (
        "記事",
        [
            "秋の京都では、寺院の紅葉を見に多くの観光客が訪れます。",
            "朝早く市場へ行くと、新鮮な魚や野菜が並んでいます。",
            "研究者たちは、海水温の上昇が漁業に与える影響を調べています。",
            "市立図書館では、子ども向けの読み聞かせ会が毎週開かれています。",
            "新幹線のおかげで、東京から大阪まで数時間で移動できます。",
            "おいしいご飯を炊くには、お米をよく研いで水加減に気をつけることが大切です。",
            "夏祭りの夜には、浴衣姿の人々が花火を楽しみます。",
            "学生たちは試験に向けて図書館で遅くまで勉強しています。",
            "山の温泉旅館では、地元の食材を使った料理が出されます。",
            "古い町並みが残る地区では、昔ながらの木造家屋が大切に保存されています。",
            "春になると、公園の桜の下でお花見をする人が増えます。",
            "自転車で通勤する人が、都市部で少しずつ増えています。",
            "富士山の山頂から見る日の出は、多くの登山者の憧れです。",
            "冬になると、北海道では雪まつりが開かれます。",
            "駅前の商店街には、昔から続く和菓子屋があります。",
            "地域のボランティアが、川の清掃活動に参加しました。",
            "梅雨の季節には、紫陽花が美しく咲きます。",
            "小学校では、子どもたちが田植えを体験しました。",
            "沖縄の海は透明度が高く、ダイビングに人気があります。",
            "新しい美術館が、港の近くに完成しました。",
            "毎朝、味噌汁を作るのが祖母の習慣です。",
            "秋には、各地で米の収穫を祝う行事が行われます。",
        ],
    ),
}

SPAM_KEYWORDS = [
    "cheap watches",
    "best price replica",
    "buy now discount",
    "free shipping watches",
    "luxury watches sale",
]
NAV = [
    "Home",
    "News",
    "World",
    "Business",
    "Technology",
    "Science",
    "Health",
    "Sports",
    "Travel",
    "Food",
    "Opinion",
    "Video",
    "Podcasts",
    "Newsletters",
    "Subscribe",
    "Log in",
    "Contact",
    "About us",
]
COOKIE = (
    "We use cookies and similar technologies to improve your experience, measure traffic and show "
    "personalised ads. By clicking Accept all you agree to the storing of cookies on your device. "
    "Manage preferences | Accept all | Reject all"
)
FOOTER = (
    "Copyright 2024 Example Media Group. All rights reserved. Terms of use | Privacy policy | "
    "Cookie settings | Accessibility | Careers | Advertise with us | Sitemap"
)
DOMAINS_EN = [
    "dailykitchen.example.com",
    "skywatch-notes.org",
    "greenfingers.example.net",
    "pastlives-history.com",
    "codecraft.example.org",
    "thegazette.example.com",
    "weekendreader.net",
    "fieldjournal.example.org",
]
DOMAINS_OTHER = {
    "vi": ["tintuc.example.vn", "baomoi-mau.vn"],
    "de": ["nachrichten.example.de", "stadtblatt.de"],
    "fr": ["journal.example.fr", "lequotidien-exemple.fr"],
    "es": ["diario.example.es", "noticias-ejemplo.es"],
    "ru": ["novosti.example.ru", "gazeta-primer.ru"],
    "zh": ["xinwen.example.cn", "shenghuo-zhinan.cn"],
    "ja": ["nyusu.example.jp", "kurashi-memo.jp"],
}


class Builder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.start = datetime(2023, 1, 1, tzinfo=UTC)

    def uid(self) -> str:
        return f"<urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}>"

    def date(self) -> str:
        seconds = self.rng.randrange(0, 2 * 365 * 86400)
        return (self.start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def paragraphs(self, bank: list[str], n_sentences: tuple[int, int], per_para: tuple[int, int]) -> list[str]:
        """A page of distinct sentences from ``bank``, grouped into paragraphs of ``per_para``.

        Sentences are drawn without replacement across the whole page: a sentence that recurs
        within a page is exactly the repetition Gopher's duplicate n-gram rules catch (real
        articles rarely repeat themselves), so good pages must pass them at their defaults.
        """
        n = min(self.rng.randint(*n_sentences), len(bank))
        sentences = self.rng.sample(bank, k=n)
        paras = []
        while sentences:
            k = self.rng.randint(*per_para)
            paras.append(" ".join(sentences[:k]))
            sentences = sentences[k:]
        return paras


def page_html(
    title: str,
    paras: list[str],
    lang: str = "en",
    charset: str | None = "utf-8",
    nav: list[str] | None = None,
    cookie: bool = False,
    footer: str = FOOTER,
    extra_head: str = "",
) -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    nav_html = "".join(f'<li><a href="/{n.lower().replace(" ", "-")}">{n}</a></li>' for n in (nav or NAV[:8]))
    body = "\n".join(f"<p>{p}</p>" for p in paras)
    cookie_html = f'<div id="cookie-banner" class="cookie-consent"><p>{COOKIE}</p></div>' if cookie else ""
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>{meta}<title>{title}</title>{extra_head}</head>\n<body>\n'
        f"{cookie_html}<header><nav><ul>{nav_html}</ul></nav></header>\n"
        f"<main><article><h1>{title}</h1>\n{body}\n</article></main>\n"
        f'<aside class="sidebar"><h3>Popular</h3><ul><li><a href="/a">Ten tips for busy weeks</a></li>'
        f'<li><a href="/b">What readers asked this month</a></li></ul></aside>\n'
        f"<footer><p>{footer}</p></footer>\n</body>\n</html>\n"
    )


def http_response(
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    status: str = "200 OK",
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    headers = [("Content-Type", content_type)] if content_type else []
    headers += extra or []
    if not any(k.lower() == "transfer-encoding" for k, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def chunked(body: bytes, size: int = 700) -> bytes:
    out = b"".join(
        f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n" for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x80\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class Archive:
    """One WARC file being written (request + response (+ metadata) per page, like CC)."""

    def __init__(self, path: Path, b: Builder):
        self.fh = open(path, "wb")
        self.w = WARCWriter(self.fh, gzip=True)
        self.b = b
        info = (
            # The script's first published path (it lived in samples/): a rerun gives the same bytes.
            f"software: curate samples/make_samples.py\r\nformat: WARC File Format 1.0\r\n"
            f"isPartOf: {CRAWL_NAME}\r\ndescription: synthetic pages written for the curate project\r\n"
        ).encode()
        self._write(
            None, "warcinfo", info, "application/warc-fields", "2024-12-31T00:00:00Z", {"WARC-Filename": path.name}
        )

    def _write(self, uri, rtype, payload: bytes, ctype: str, date: str, extra: dict | None = None) -> str:
        rid = self.b.uid()
        headers = {"WARC-Date": date, "WARC-Record-ID": rid, **(extra or {})}
        rec = self.w.create_warc_record(
            uri,
            rtype,
            payload=io.BytesIO(payload),
            length=len(payload),
            warc_headers_dict=headers,
            warc_content_type=ctype,
        )
        self.w.write_record(rec)
        return rid

    def response(self, url: str, http: bytes, date: str | None = None, metadata: bool = True) -> str:
        date = date or self.b.date()
        host = url.split("/")[2]
        req = f"GET /{url.split('/', 3)[3] if url.count('/') >= 3 else ''} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curate-samples\r\n\r\n".encode()
        self._write(url, "request", req, "application/http; msgtype=request", date)
        rid = self._write(url, "response", http, "application/http; msgtype=response", date)
        if metadata:
            self._write(
                url, "metadata", b"fetchTimeMs: 112\r\n", "application/warc-fields", date, {"WARC-Concurrent-To": rid}
            )
        return rid

    def revisit(self, url: str, date: str) -> None:
        http = b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n'
        self._write(
            url,
            "revisit",
            http,
            "application/http; msgtype=response",
            date,
            {
                "WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest",
                "WARC-Refers-To-Target-URI": url,
            },
        )

    def close(self) -> None:
        self.fh.close()


def slug(text: str, n: int) -> str:
    return "-".join(text.lower().split()[:n]).strip(".,:;")


def build() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    b = Builder(SEED)
    archives = [Archive(OUT / f"curate-sample-{i:05d}.warc.gz", b) for i in range(3)]
    pick = lambda i: archives[i % len(archives)]  # noqa: E731
    counter = 0
    articles: list[tuple[str, str, list[str]]] = []

    # English articles: long enough for quality filters (several paragraphs, 300+ words).
    for i in range(150):
        topic = list(EN)[i % len(EN)]
        paras = b.paragraphs(EN[topic], (17, 24), (3, 5))
        title = (
            f"{topic.capitalize()} notes #{i // len(EN) + 1}: {EN[topic][i % len(EN[topic])].split(',')[0].rstrip('.')}"
        )
        url = f"https://{b.rng.choice(DOMAINS_EN)}/{topic}/{i:04d}-{slug(paras[0], 5)}"
        html = page_html(title, paras, cookie=(i % 7 == 0))
        encoding = i % 10
        if encoding == 1:  # gzip content encoding
            http = http_response(_gzip(html.encode()), extra=[("Content-Encoding", "gzip")])
        elif encoding == 2:  # chunked transfer encoding
            http = http_response(chunked(html.encode()), extra=[("Transfer-Encoding", "chunked")])
        elif encoding == 3:  # brotli
            http = http_response(brotli.compress(html.encode(), quality=5), extra=[("Content-Encoding", "br")])
        elif encoding == 4:  # deflate
            http = http_response(zlib.compress(html.encode(), 6), extra=[("Content-Encoding", "deflate")])
        else:
            http = http_response(html.encode())
        pick(counter).response(url, http)
        counter += 1
        articles.append((url, title, paras))

    # Other languages.
    for lang, (word, bank) in OTHER.items():
        for j in range(12):
            paras = b.paragraphs(bank, (11, 16), (2, 4))
            # The headline is a sentence that is not in the body, so it does not repeat it.
            unused = [s for s in bank if s not in " ".join(paras)]
            title = f"{word} {j + 1}: {unused[j % len(unused)][:30]}"
            url = f"https://{DOMAINS_OTHER[lang][j % 2]}/{lang}/{j:03d}.html"
            pick(counter).response(url, http_response(page_html(title, paras, lang=lang).encode()))
            counter += 1

    # Legacy charsets.
    ru_paras = b.paragraphs(OTHER["ru"][1], (12, 16), (3, 4))
    html = page_html("Новости города", ru_paras, lang="ru", charset=None)
    pick(counter).response(
        "https://gorod-novosti.ru/cp1251.html",
        http_response(html.encode("cp1251"), content_type="text/html; charset=windows-1251"),
    )
    counter += 1
    zh_paras = b.paragraphs(OTHER["zh"][1], (12, 16), (3, 4))
    html = page_html("城市生活", zh_paras, lang="zh", charset="gb2312")
    pick(counter).response(
        "https://shenghuo.example.cn/gb2312.html", http_response(html.encode("gb2312"), content_type="text/html")
    )
    counter += 1
    ja_paras = b.paragraphs(OTHER["ja"][1], (12, 16), (3, 4))
    html = page_html("くらしの話題", ja_paras, lang="ja", charset=None)
    pick(counter).response(
        "https://kurashi.example.jp/eucjp.html",
        http_response(html.encode("euc_jp"), content_type="text/html; charset=EUC-JP"),
    )
    counter += 1
    html = page_html("季節のたより", b.paragraphs(OTHER["ja"][1], (10, 14), (3, 4)), lang="ja", charset="shift_jis")
    pick(counter).response(
        "https://kisetsu.example.jp/sjis.html", http_response(html.encode("shift_jis"), content_type="text/html")
    )
    counter += 1

    # Boilerplate-heavy pages: big menus, cookie banner, footer, one short paragraph.
    for j in range(15):
        topic = list(EN)[j % len(EN)]
        big_nav = NAV + [f"Section {k}" for k in range(1, 25)]
        html = page_html(
            f"Latest from {topic}",
            [b.rng.choice(EN[topic])],
            nav=big_nav,
            cookie=True,
            footer=FOOTER + " | " + " | ".join(f"Partner site {k}" for k in range(1, 15)),
        )
        pick(counter).response(f"https://portal.example.com/{topic}/index-{j}.html", http_response(html.encode()))
        counter += 1

    # Spam / SEO pages.
    for j in range(12):
        kw = SPAM_KEYWORDS[j % len(SPAM_KEYWORDS)]
        if j % 2 == 0:
            words = [b.rng.choice(SPAM_KEYWORDS) for _ in range(120)]
            paras = [" ".join(words[k : k + 30]) for k in range(0, 120, 30)]
        else:
            paras = [f"Best {kw} online, order today and save 70 percent!"] * 25
        html = page_html(f"{kw.title()} | {kw} | {kw} online", paras)
        pick(counter).response(f"https://{kw.replace(' ', '-')}-{j}.example.biz/", http_response(html.encode()))
        counter += 1

    # Exact duplicates (same HTML, another URL) and near duplicates (a few sentences changed).
    for j in range(8):
        url, title, paras = articles[j * 3]
        pick(counter).response(
            url.replace("https://", "https://mirror.").replace(".com/", ".com/copy/"),
            http_response(page_html(title, paras).encode()),
        )
        counter += 1
    for j in range(8):
        url, title, paras = articles[j * 3 + 1]
        topic = url.split("/")[3]
        edited = list(paras)
        k = b.rng.randrange(len(edited))
        unused = [s for s in EN[topic] if s not in " ".join(paras)]  # no sentence twice on a page
        edited[k] = edited[k] + " " + b.rng.choice(unused)
        edited[-1] = "Updated: " + edited[-1]
        pick(counter).response(url + "-updated", http_response(page_html(title + " (updated)", edited).encode()))
        counter += 1

    # Safety-filter bait: blocklisted-looking domains and PII.
    for host in ("adult-xxx-cams.com", "free-crack-downloads.ru"):
        paras = b.paragraphs(EN["software"], (12, 16), (3, 4))
        pick(counter).response(f"https://{host}/page.html", http_response(page_html("Welcome", paras).encode()))
        counter += 1
    pii = [
        "For questions about your order write to jane.doe@example-mail.com or call +1 (555) 014-2368 between nine and five.",
        "Contact our volunteer coordinator, Tom Baker, at tom.baker1987@example.org or on 020 7946 0958.",
        "Send your CV to recruiting@northwind-traders.example.com; phone enquiries go to +49 30 901820.",
        "Liên hệ với chúng tôi qua email hotro@example.vn hoặc số điện thoại 0912 345 678.",
    ]
    for j, line in enumerate(pii):
        paras = b.paragraphs(EN["gardening"], (12, 18), (3, 5)) + [line]
        pick(counter).response(
            f"https://community.example.org/contact-{j}", http_response(page_html("Get in touch", paras).encode())
        )
        counter += 1

    # Not pages: robots.txt, an image, JSON, a redirect, a 404, a revisit.
    a = archives[0]
    a.response(
        "https://thegazette.example.com/robots.txt",
        http_response(b"User-agent: *\nDisallow: /admin/\n", content_type="text/plain"),
    )
    a.response("https://thegazette.example.com/logo.png", http_response(tiny_png(), content_type="image/png"))
    a.response(
        "https://api.example.com/v1/items", http_response(b'{"items": [1, 2, 3]}', content_type="application/json")
    )
    a.response(
        "http://thegazette.example.com/old-page",
        http_response(
            b"",
            content_type="text/html",
            status="301 Moved Permanently",
            extra=[("Location", "https://thegazette.example.com/new-page")],
        ),
    )
    a.response(
        "https://thegazette.example.com/missing",
        http_response(b"<html><body><h1>Not Found</h1></body></html>", status="404 Not Found"),
    )
    a.revisit(articles[0][0], "2024-12-30T10:00:00Z")
    for arc in archives:
        arc.close()

    # One WET file: conversion records with the text as is.
    with open(OUT / "curate-sample-00000.warc.wet.gz", "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        info = f"isPartOf: {CRAWL_NAME}\r\ndescription: WET text of synthetic pages\r\n".encode()
        w.write_record(
            w.create_warc_record(
                None,
                "warcinfo",
                payload=io.BytesIO(info),
                length=len(info),
                warc_headers_dict={"WARC-Date": "2024-12-31T00:00:00Z", "WARC-Record-ID": b.uid()},
                warc_content_type="application/warc-fields",
            )
        )
        for j in range(24):
            lang = ["en", "vi", "de", "fr"][j % 4]
            bank = EN[list(EN)[j % len(EN)]] if lang == "en" else OTHER[lang][1]
            text = "\n".join(b.paragraphs(bank, (10, 16), (3, 5))).encode()
            headers = {
                "WARC-Date": b.date(),
                "WARC-Record-ID": b.uid(),
                "WARC-Identified-Content-Language": {"en": "eng", "vi": "vie", "de": "deu", "fr": "fra"}[lang],
            }
            w.write_record(
                w.create_warc_record(
                    f"https://wet.example.org/{lang}/{j}",
                    "conversion",
                    payload=io.BytesIO(text),
                    length=len(text),
                    warc_headers_dict=headers,
                    warc_content_type="text/plain",
                )
            )


def _gzip(data: bytes) -> bytes:
    """gzip without a timestamp (deterministic)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


if __name__ == "__main__":
    build()
    total = sum(p.stat().st_size for p in OUT.glob("*"))
    print(f"wrote {len(list(OUT.glob('*')))} files, {total / 1e6:.2f} MB, to {OUT}")
